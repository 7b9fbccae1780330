"""A malicious Flower node: an ordinary ClientApp whose node config names an attack.

The run config (the server's) never names the attack: the server is not told. A SuperNode
started with ``--node-config "partition-id=1 attack='sign-flip' attack-strength=2.0"`` lies
exactly as client 1 lies in ``protofl run --set attack=sign-flip --set attack_strength=2.0
--set malicious_clients=<its id>``: the same poisoned data, the same crafted update, the same
seeds. Node config keys: ``attack``, ``attack-strength``, ``backdoor-target``,
``backdoor-fraction``.

alie, min-max and min-sum craft the lie from the other clients' updates of the round, which
no node receives: the papers' attacker is omniscient. protofl emulates that attacker on the
server side as an evaluation harness: such a node sends its honest update tagged with its
attack (:func:`tag_round_attack`); before anything else the strategy removes the tag
(:func:`take_round_attack`) and replaces the tagged updates by the simulator's crafted ones
(``engine.round_attacks.crafted_round``). Screening and the defence only ever see the
crafted updates, untagged, as in the simulator. A real deployment has no such tag.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flwr.app import RecordDict

from protofl.config import RunConfig
from protofl.config.robustness import PERTURBATIONS
from protofl.core.payloads import ClientUpdate, ServerMessage
from protofl.engine.attacks import (
    LABEL_FLIPS,
    Attack,
    check_prototype_poison,
    flipped_labels,
    poisoned,
    sends_prototypes,
)
from protofl.engine.backdoor import backdoored, check_backdoor
from protofl.engine.client import copy_state
from protofl.engine.round_attacks import ROUND_ATTACKS
from protofl.errors import ConfigError, PayloadError
from protofl.flower.fields import META

if TYPE_CHECKING:  # client.py imports this module
    from protofl.flower.client import ClientSetup

# node config key -> RunConfig field
NODE_KEYS = {
    "attack": "attack",
    "attack-strength": "attack_strength",
    "backdoor-target": "backdoor_target",
    "backdoor-fraction": "backdoor_fraction",
    "attack-perturbation": "attack_perturbation",
}


def node_attack(node_config: Mapping[str, Any], client_id: str) -> Attack | None:
    """The attack the node config names for this node's client, checked as the run config
    checks it; None for an honest node."""
    if not node_config.get("attack"):
        extra = sorted(set(NODE_KEYS) & set(node_config) - {"attack"})
        if extra:
            raise ConfigError(f"node config sets {', '.join(extra)} but no attack.")
        return None
    values = {field: node_config[key] for key, field in NODE_KEYS.items() if key in node_config}
    try:  # the run config's checks, with this node as the one liar
        config = RunConfig(**values, malicious_clients=(client_id,))
    except ConfigError as err:
        raise ConfigError(f"node config: {err}") from None
    return Attack(
        config.attack,
        frozenset({client_id}),
        config.attack_strength,
        config.backdoor_target,
        config.backdoor_fraction,
        config.attack_perturbation,
    )


def armed(setup: ClientSetup, node_config: Mapping[str, Any]) -> ClientSetup:
    """``setup`` with the node config's attack: its data poisoned once (label-flip,
    backdoor) and the attack kept for the updates. The simulator's refusals apply
    (non-image data for a backdoor, no prototypes to poison)."""
    attack = node_attack(node_config, setup.data.client_id)
    if attack is None:
        return setup
    data = setup.data
    if attack.name in LABEL_FLIPS:
        data = flipped_labels(data, setup.num_classes, attack.name)
    if attack.name == "backdoor":
        check_backdoor(data.source.inputs, attack.backdoor_target, setup.num_classes)
        data = backdoored(data, attack.backdoor_target, attack.backdoor_fraction, setup.seed)
    if attack.name == "prototype-poison":
        state = setup.algorithm.init_state(copy_state(setup.model))
        sends = sends_prototypes(setup.algorithm, state, setup.model, data, setup.precision)
        check_prototype_poison(sends, type(setup.algorithm).__name__, setup.num_classes)
    return dataclasses.replace(setup, data=data, attack=attack)


# meta keys of the tag
ROUND_ATTACK, ROUND_STRENGTH, ROUND_KIND = "round_attack", "round_attack_strength", "round_kind"
RoundTag = tuple[str, float | None, str]  # (attack, strength, perturbation)


def tag_round_attack(content: RecordDict, attack: Attack | None) -> RecordDict:
    """Tag a reply whose node runs an omniscient attack (alie, min-max, min-sum)."""
    if attack is not None and attack.name in ROUND_ATTACKS:
        meta = content.config_records[META]
        meta[ROUND_ATTACK], meta[ROUND_KIND] = attack.name, attack.perturbation
        if attack.strength is not None:
            meta[ROUND_STRENGTH] = float(attack.strength)
    return content


def take_round_attack(content: RecordDict) -> RoundTag | None:
    """Remove a reply's tag and return (attack, strength, perturbation), or None for an
    untagged reply."""
    meta = content.config_records.get(META)
    if meta is None or ROUND_ATTACK not in meta:
        return None
    name, strength = meta.pop(ROUND_ATTACK), meta.pop(ROUND_STRENGTH, None)
    kind = meta.pop(ROUND_KIND, "std")
    if name not in ROUND_ATTACKS or not (strength is None or isinstance(strength, float)):
        raise PayloadError(f"reply: {ROUND_ATTACK}={name!r} with strength {strength!r}")
    if kind not in PERTURBATIONS:
        raise PayloadError(f"reply: {ROUND_KIND}={kind!r}; expected one of {PERTURBATIONS}")
    return str(name), strength, str(kind)


def lie(update: ClientUpdate, message: ServerMessage, setup: ClientSetup) -> ClientUpdate:
    """The update a malicious node sends instead of ``update`` (as the simulator's liar)."""
    if setup.attack is None:
        return update
    return poisoned(
        update,
        message.weights,
        setup.attack,
        setup.seed,
        setup.client_index,
        message.round,
        setup.num_classes,
    )
