"""Attacks that craft the liars' update from the honest updates of the same round.

The attacker is omniscient, as the papers assume: every client trains first, then each liar
replaces its update by one crafted from the round's honest updates ("benign" below), and
only then are the updates screened and aggregated. All liars of a round send the same
crafted weights. Only floating-point entries are crafted (BatchNorm's running statistics
included); integer counters are sent as the liar trained them.

- ``alie`` (Baruch et al., "A Little Is Enough", NeurIPS 2019): ``mean - z * std`` per
  coordinate of the benign weights, with the paper's ``z_max`` (:func:`alie_z`) unless
  ``attack_strength`` sets ``z``.

The statistics are those of the honest clients of the round; when every client of a round
lies (partial participation), the liars' own trained updates are the benign reference, as
Baruch et al.'s attackers estimate them from their own data. Mean and std are unweighted;
std is the sample std (n - 1), 0 for a single benign update. All statistics are
shift-invariant, so weights give the same crafted model as updates ``w - g`` would.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from statistics import NormalDist

import torch

from protofl.core.payloads import ClientUpdate, StateDict

ROUND_ATTACKS = ("alie",)  # the attacks that need every update of the round first


def alie_z(clients: int, malicious: int) -> float:
    """Baruch et al.'s z_max for ``malicious`` liars among ``clients``: ``s = floor(n/2 + 1)
    - m`` honest clients must be further from the mean than the liars, so ``z_max =
    Phi^-1((n - s) / n)``. It is 0 for one liar among 4 (the crafted update is then the
    honest mean); ``s`` is kept >= 1 so that a liar majority gets a finite z."""
    if clients < 2 or malicious < 1:
        return 0.0
    supporters = max(math.floor(clients / 2 + 1) - malicious, 1)
    return max(NormalDist().inv_cdf((clients - supporters) / clients), 0.0)


def benign_stack(benign: Sequence[StateDict], key: str) -> torch.Tensor:
    """``key``'s tensors of the benign states stacked, in at least float32: [n, ...]."""
    first = benign[0][key]
    dtype = torch.promote_types(first.dtype, torch.float32)
    return torch.stack([state[key].to(dtype) for state in benign])


def coordinate_std(stack: torch.Tensor) -> torch.Tensor:
    """Per-coordinate sample std over dim 0 (n - 1), 0 for a single row: [...]."""
    return stack.std(dim=0, correction=1 if stack.shape[0] > 1 else 0)


def alie_weights(benign: Sequence[StateDict], z: float) -> StateDict:
    """``mean - z * std`` of every floating entry of the benign states (Baruch et al. eq. 2)."""
    crafted = {}
    for key, value in benign[0].items():
        if value.is_floating_point():
            stack = benign_stack(benign, key)
            crafted[key] = (stack.mean(dim=0) - z * coordinate_std(stack)).to(value.dtype)
    return crafted


def crafted_round(
    updates: Sequence[ClientUpdate], liars: frozenset[str], name: str, strength: float | None
) -> list[ClientUpdate]:
    """The round's updates in their order, each liar's floating weights replaced by the
    crafted ones (its integer counters kept)."""
    lying = [u for u in updates if u.client_id in liars]
    if not lying:
        return list(updates)
    honest = [u for u in updates if u.client_id not in liars] or lying
    benign = [u.weights for u in honest]
    z = alie_z(len(updates), len(lying)) if strength is None else strength
    crafted = alie_weights(benign, z)
    return [
        dataclasses.replace(u, weights={**u.weights, **crafted}) if u.client_id in liars else u
        for u in updates
    ]
