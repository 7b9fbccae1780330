"""Malicious clients for robustness experiments: which clients lie, and how.

A seeded draw (``malicious_fraction`` of the clients, or the named ``malicious_clients``)
picks the liars; the run records them in ``config.json``, the server is not told. Attacks:

- ``label-flip``: the client trains on flipped labels, ``y -> C - 1 - y`` (symmetric flip;
  Tolpegin et al., ESORICS 2020, among others), and reports honestly otherwise;
- ``sign-flip``: it sends ``g - s (w - g)`` instead of its trained weights ``w`` (``g`` the
  global weights it received, ``s`` the ``attack_strength``): its update reversed and scaled;
- ``noise``: it sends ``g + N(0, s^2)`` per coordinate, a random-noise model;
- ``alie``, ``min-max``, ``min-sum``: crafted from the round's honest updates
  (:mod:`protofl.engine.round_attacks`);
- ``backdoor``: it trains on data with a pixel trigger (:mod:`protofl.engine.backdoor`).

``s`` defaults to 1 when ``attack_strength`` is not set.

The model-poisoning attacks change floating-point entries only; BatchNorm's integer counters
are sent as trained, so a lie never breaks the payload checks by construction.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence

import numpy as np
import torch

from protofl.core.payloads import ClientUpdate, StateDict
from protofl.core.seeding import derive_seed, torch_generator
from protofl.engine.data import ClientData, TensorSet
from protofl.engine.round_attacks import alie_z
from protofl.errors import ConfigError
from protofl.federation.participation import participants

logger = logging.getLogger(__name__)

# config.ATTACK_NAMES; a test holds them equal
ATTACKS = ("label-flip", "sign-flip", "noise", "alie", "min-max", "min-sum", "backdoor")
POISONING = ("sign-flip", "noise")  # the attacks that change the update sent


@dataclasses.dataclass(frozen=True)
class Attack:
    """The run's attack and who carries it out; ``name == ""`` means none."""

    name: str = ""
    malicious: frozenset[str] = frozenset()  # client ids
    strength: float | None = None  # None: each attack's default
    backdoor_target: int = 0
    backdoor_fraction: float = 0.3

    @property
    def scale(self) -> float:
        """sign-flip's scale, noise's std: the strength, 1 by default."""
        return 1.0 if self.strength is None else self.strength

    def lies(self, client_id: str) -> bool:
        return bool(self.name) and client_id in self.malicious


NO_ATTACK = Attack()


def draw_malicious(
    client_ids: Sequence[str], fraction: float, named: Sequence[str], seed: int
) -> frozenset[str]:
    """The named clients, or round(fraction x K) of the K clients drawn with the run's seed."""
    if named:
        unknown = sorted(set(named) - set(client_ids))
        if unknown:
            raise ConfigError(
                f"malicious_clients {', '.join(unknown)} are not clients of this run; "
                f"the clients are {', '.join(client_ids)}."
            )
        return frozenset(named)
    count = math.floor(fraction * len(client_ids) + 0.5)
    rng = np.random.default_rng(derive_seed(seed, "malicious"))
    picked = rng.choice(len(client_ids), size=count, replace=False).tolist() if count else []
    return frozenset(client_ids[int(i)] for i in picked)


def attack_facts(attack: Attack, clients: int, per_round: float) -> dict[str, float]:
    """What config.json records beside the liars: alie's z when every client trains in
    every round (with partial participation it follows each round's count), and a warning
    when it is 0, the honest mean (one liar among 4)."""
    if attack.name != "alie":
        return {}
    if attack.strength is not None:
        return {"alie_z": attack.strength}
    if participants(clients, per_round) < clients:
        return {}
    z = alie_z(clients, len(attack.malicious))
    if z == 0:
        logger.warning(
            "alie: the paper's z is 0 for %d liar(s) among %d clients, so the liars send the "
            "honest mean; set attack_strength (z) for a stronger lie.",
            len(attack.malicious),
            clients,
        )
    return {"alie_z": z}


def flipped_labels(client: ClientData, num_classes: int) -> ClientData:
    """The client with its labels flipped (``C - 1 - y``); its inputs are shared, not copied."""
    source = TensorSet(client.source.inputs, num_classes - 1 - client.source.labels)
    return dataclasses.replace(client, source=source)


def poisoned(
    update: ClientUpdate, received: StateDict, attack: Attack, seed: int, index: int, round_: int
) -> ClientUpdate:
    """The update a model-poisoning client sends instead of ``update`` (label-flip: as is)."""
    if attack.name not in POISONING:
        return update
    generator = torch_generator(derive_seed(seed, "attack", index, round_), "cpu")
    weights = {}
    for key, value in update.weights.items():
        if not value.is_floating_point():
            weights[key] = value
            continue
        start = received[key].to(value.device, value.dtype)
        if attack.name == "sign-flip":
            weights[key] = start - attack.scale * (value - start)
        else:
            noise = torch.randn(value.shape, generator=generator, dtype=value.dtype)
            weights[key] = start + attack.scale * noise.to(value.device)
    return dataclasses.replace(update, weights=weights)
