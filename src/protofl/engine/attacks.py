"""Malicious clients for robustness experiments: which clients lie, and how.

A seeded draw (``malicious_fraction`` of the clients, or the named ``malicious_clients``)
picks the liars; the run records them in ``config.json``, the server is not told. Attacks:

- ``label-flip``: the client trains on flipped labels, ``y -> C - 1 - y`` (symmetric flip;
  Tolpegin et al., ESORICS 2020, among others), and reports honestly otherwise;
  ``label-flip-pair`` flips each class to the next one, ``y -> (y + 1) mod C`` (the pair flip
  of the noisy-label literature, as MarsFL's PairFlip);
- ``sign-flip``: it sends ``g - s (w - g)`` instead of its trained weights ``w`` (``g`` the
  global weights it received, ``s`` the ``attack_strength``): its update reversed and scaled;
- ``noise``: it sends ``g + N(0, s^2)`` per coordinate, a random-noise model;
- ``alie``, ``min-max``, ``min-sum``: crafted from the round's honest updates
  (:mod:`protofl.engine.round_attacks`);
- ``backdoor``: it trains on data with a pixel trigger (:mod:`protofl.engine.backdoor`);
- ``prototype-poison``: it trains and sends its weights honestly, but uploads each of its
  class prototypes under the next class's label, ``(v, y) -> (v, (y + 1) mod C)``: every
  vector is a real prototype of its norm and support, so norm and shape checks pass, while
  FPL's clusters and unbiased prototype of class ``y + 1`` take in a prototype of class
  ``y``. Only for the algorithms whose clients upload prototypes (:func:`sends_prototypes`).

``s`` defaults to 1 when ``attack_strength`` is not set.

The model-poisoning attacks change floating-point entries only; BatchNorm's integer counters
are sent as trained, so a lie never breaks the payload checks by construction.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from protofl.algorithms import Algorithm
from protofl.config.robustness import ATTACK_NAMES
from protofl.core.payloads import ClientUpdate, GlobalState, Prototypes, StateDict
from protofl.core.seeding import derive_seed, torch_generator
from protofl.engine.client import run_client_round
from protofl.engine.data import ClientData, TensorSet
from protofl.engine.local import LocalSettings
from protofl.engine.precision import FP32, Precision
from protofl.engine.round_attacks import alie_z
from protofl.errors import ConfigError
from protofl.federation.participation import participants

logger = logging.getLogger(__name__)

ATTACKS = ATTACK_NAMES  # the one list, in config (checked there without importing torch)
POISONING = ("sign-flip", "noise")  # the attacks that change the update sent


@dataclasses.dataclass(frozen=True)
class Attack:
    """The run's attack and who carries it out; ``name == ""`` means none."""

    name: str = ""
    malicious: frozenset[str] = frozenset()  # client ids
    strength: float | None = None  # None: each attack's default
    backdoor_target: int = 0
    backdoor_fraction: float = 0.3
    perturbation: str = "std"  # min-max / min-sum's direction

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


LABEL_FLIPS = ("label-flip", "label-flip-pair")  # the attacks that only relabel the data


def flipped_labels(client: ClientData, num_classes: int, how: str = "label-flip") -> ClientData:
    """The client with its labels flipped, ``C - 1 - y`` (``label-flip``) or ``(y + 1) mod C``
    (``label-flip-pair``); its inputs are shared, not copied."""
    labels = client.source.labels
    if how == "label-flip-pair":
        flipped = (labels + 1) % num_classes
    elif how == "label-flip":
        flipped = num_classes - 1 - labels
    else:
        raise ValueError(f"not a label flip: {how!r}")
    return dataclasses.replace(client, source=TensorSet(client.source.inputs, flipped))


def shifted_prototypes(prototypes: Prototypes, num_classes: int) -> Prototypes:
    """Each prototype under the next class's label, ``(y + 1) mod C``; vectors, support and
    domain tags as they were."""
    labels = (prototypes.labels + 1) % num_classes
    return Prototypes(prototypes.vectors, labels, prototypes.support, prototypes.domains)


def sends_prototypes(
    algorithm: Algorithm,
    state: GlobalState,
    model: nn.Module,
    client: ClientData,
    precision: Precision = FP32,
) -> bool:
    """Whether ``algorithm``'s clients upload prototypes, asked the only sure way: one client
    round on 4 of ``client``'s samples, on a copy of ``model`` (FedPLVM, for one, makes its
    prototypes in its own ``finish``, so no flag of the hooks tells)."""
    few = dataclasses.replace(client, indices=client.indices[:4])
    update, _ = run_client_round(
        algorithm,
        copy.deepcopy(model),
        few,
        0,
        algorithm.message(state),
        {},
        LocalSettings(epochs=1, batch_size=4, lr=0.01, momentum=0.0, weight_decay=0.0),
        seed=0,
        precision=precision,
    )
    return update.prototypes is not None


def check_prototype_poison(sends: bool, algorithm: str, num_classes: int) -> None:
    if not sends:
        raise ConfigError(
            f"attack='prototype-poison' needs an algorithm whose clients upload prototypes "
            f"(fpl and its variants, fedproto, fedproc, fedplvm, feddap); {algorithm!r} sends "
            "only weights. Choose another attack or algorithm."
        )
    if num_classes < 2:
        raise ConfigError("attack='prototype-poison' needs at least 2 classes to swap.")


def poisoned(
    update: ClientUpdate,
    received: StateDict,
    attack: Attack,
    seed: int,
    index: int,
    round_: int,
    num_classes: int,
) -> ClientUpdate:
    """The update a poisoning client sends instead of ``update`` (label-flip: as is)."""
    if attack.name == "prototype-poison" and update.prototypes is not None:
        return dataclasses.replace(
            update, prototypes=shifted_prototypes(update.prototypes, num_classes)
        )
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
