"""Malicious clients for robustness experiments: which clients lie, and how.

A seeded draw (``malicious_fraction`` of the clients, or the named ``malicious_clients``)
picks the liars; the run records them in ``config.json``, the server is not told. Attacks:

- ``label-flip``: the client trains on flipped labels, ``y -> C - 1 - y`` (symmetric flip;
  Tolpegin et al., ESORICS 2020, among others), and reports honestly otherwise;
- ``sign-flip``: it sends ``g - s (w - g)`` instead of its trained weights ``w`` (``g`` the
  global weights it received, ``s`` the ``attack_strength``): its update reversed and scaled;
- ``noise``: it sends ``g + N(0, s^2)`` per coordinate, a random-noise model.

The model-poisoning attacks change floating-point entries only; BatchNorm's integer counters
are sent as trained, so a lie never breaks the payload checks by construction.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import torch

from protofl.core.payloads import ClientUpdate, StateDict
from protofl.core.seeding import derive_seed, torch_generator
from protofl.engine.data import ClientData, TensorSet
from protofl.errors import ConfigError

ATTACKS = ("label-flip", "sign-flip", "noise")  # config.ATTACK_NAMES; a test holds them equal
POISONING = ("sign-flip", "noise")  # the attacks that change the update sent


@dataclasses.dataclass(frozen=True)
class Attack:
    """The run's attack and who carries it out; ``name == ""`` means none."""

    name: str = ""
    malicious: frozenset[str] = frozenset()  # client ids
    strength: float = 1.0

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
            weights[key] = start - attack.strength * (value - start)
        else:
            noise = torch.randn(value.shape, generator=generator, dtype=value.dtype)
            weights[key] = start + attack.strength * noise.to(value.device)
    return dataclasses.replace(update, weights=weights)
