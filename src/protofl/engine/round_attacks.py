"""Attacks that craft the liars' update from the honest updates of the same round.

The attacker is omniscient, as the papers assume: every client trains first, then each liar
replaces its update by one crafted from the round's honest updates ("benign" below), and
only then are the updates screened and aggregated. All liars of a round send the same
crafted weights. Only floating-point entries are crafted (BatchNorm's running statistics
included); integer counters are sent as the liar trained them.

- ``alie`` (Baruch et al., "A Little Is Enough", NeurIPS 2019): ``mean - z * std`` per
  coordinate of the benign weights, with the paper's ``z_max`` (:func:`alie_z`) unless
  ``attack_strength`` sets ``z``;
- ``min-max`` and ``min-sum`` (Shejwalkar & Houmansadr, NDSS 2021, their AGR-agnostic
  attacks): ``mean + gamma * p`` with one of the paper's three perturbations
  (``attack_perturbation``): ``std``, ``p = -std`` per coordinate (their default); ``unit``,
  ``p = -d / |d|`` for the mean benign update ``d = mean - g`` (``g`` the round's starting
  global weights; the norm over every floating entry together); ``sign``, ``p = -sign(d)``;
  ``gamma`` the largest for which the crafted update's largest squared distance
  to a benign update stays within the largest benign pairwise one (min-max), or its sum of
  squared distances to the benign updates within the largest such sum of a benign update
  (min-sum); found by the paper's search (:func:`largest_gamma`).

The statistics are those of the honest clients of the round; when every client of a round
lies (partial participation), the liars' own trained updates are the benign reference, as
Baruch et al.'s attackers estimate them from their own data. Mean and std are unweighted;
std is the sample std (n - 1), 0 for a single benign update. The distances are
shift-invariant, so weights give the same crafted model as updates ``w - g`` would; only the
``unit`` and ``sign`` directions read ``g``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from statistics import NormalDist

import torch

from protofl.core.payloads import ClientUpdate, StateDict

ROUND_ATTACKS = ("alie", "min-max", "min-sum")  # need every update of the round first
GAMMA_START, GAMMA_TOLERANCE = 10.0, 1e-5  # the paper's gamma_init and threshold tau


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


def distance_terms(
    benign: Sequence[StateDict], direction: StateDict
) -> tuple[torch.Tensor, torch.Tensor, float, torch.Tensor]:
    """Over every floating entry: ``a_i = |mean - x_i|^2``, ``b_i = <mean - x_i, p>``, ``c =
    |p|^2`` and the benign squared distances ``D_ij``, in float64 on the CPU, so that
    ``|mean + gamma p - x_i|^2 = a_i + 2 gamma b_i + gamma^2 c`` costs nothing per gamma."""
    count = len(benign)
    a, b = torch.zeros(count, dtype=torch.float64), torch.zeros(count, dtype=torch.float64)
    pairwise, c = torch.zeros(count, count, dtype=torch.float64), 0.0
    for key, p in direction.items():
        flat = benign_stack(benign, key).flatten(1)  # [n, numel]
        offsets = flat.mean(dim=0) - flat  # [n, numel]
        p_flat = p.to(flat.dtype).flatten()
        a += offsets.pow(2).sum(dim=1).to("cpu", torch.float64)
        b += (offsets @ p_flat).to("cpu", torch.float64)
        c += float(p_flat.to("cpu", torch.float64).pow(2).sum())
        # exact differences, not |x|^2 + |y|^2 - 2<x, y>, which cancels for close updates
        exact = torch.cdist(flat, flat, compute_mode="donot_use_mm_for_euclid_dist")
        pairwise += exact.to("cpu", torch.float64).pow(2)
    return a, b, c, pairwise


def largest_gamma(
    feasible: Callable[[float], bool],
    start: float = GAMMA_START,
    tolerance: float = GAMMA_TOLERANCE,
) -> float:
    """The largest ``gamma >= 0`` that ``feasible`` accepts, to ``tolerance``, for a feasible
    set ``[0, gamma*]`` (both constraints are convex in gamma and hold at 0). The paper's
    search halves its step from ``start`` and so never passes ``2 x start``; this one first
    doubles ``start`` while it is feasible (at most 40 times), then bisects."""
    if not feasible(0.0):
        return 0.0
    low, high = 0.0, start
    for _ in range(40):
        if not feasible(high):
            break
        low, high = high, 2 * high
    else:
        return low  # a zero perturbation: every gamma passes
    while high - low > tolerance:
        middle = (low + high) / 2
        low, high = (middle, high) if feasible(middle) else (low, middle)
    return low


def min_max_gamma(a: torch.Tensor, b: torch.Tensor, c: float, pairwise: torch.Tensor) -> float:
    """min-max: ``max_i |m - x_i|^2 <= max_ij |x_i - x_j|^2``."""
    limit = float(pairwise.max())
    return largest_gamma(lambda g: float((a + 2 * g * b + g * g * c).max()) <= limit)


def min_sum_gamma(a: torch.Tensor, b: torch.Tensor, c: float, pairwise: torch.Tensor) -> float:
    """min-sum: ``sum_i |m - x_i|^2 <= max_i sum_j |x_i - x_j|^2``."""
    limit = float(pairwise.sum(dim=1).max())
    return largest_gamma(lambda g: float((a + 2 * g * b + g * g * c).sum()) <= limit)


def perturbation(
    benign: Sequence[StateDict], kind: str, start: StateDict | None
) -> tuple[StateDict, StateDict]:
    """(mean, p) over the floating entries of the benign states for direction ``kind``."""
    means, spreads = {}, {}
    for key, value in benign[0].items():
        if value.is_floating_point():
            stack = benign_stack(benign, key)
            means[key], spreads[key] = stack.mean(dim=0), coordinate_std(stack)
    if kind == "std":
        return means, {key: -spread for key, spread in spreads.items()}
    if start is None:
        raise ValueError(f"the {kind!r} perturbation needs the round's starting weights")
    drift = {key: mean - start[key].to(mean) for key, mean in means.items()}  # mean update d
    if kind == "sign":
        return means, {key: -torch.sign(d) for key, d in drift.items()}
    if kind != "unit":
        raise ValueError(f"unknown perturbation {kind!r}")
    norm = math.sqrt(sum(float(d.double().pow(2).sum()) for d in drift.values()))
    return means, {key: -d / norm if norm > 0 else torch.zeros_like(d) for key, d in drift.items()}


def min_max_weights(
    benign: Sequence[StateDict], name: str, kind: str = "std", start: StateDict | None = None
) -> StateDict:
    """``mean + gamma * p`` over the floating entries, gamma by ``name``'s constraint and
    ``p`` by ``kind`` (:func:`perturbation`)."""
    means, direction = perturbation(benign, kind, start)
    terms = distance_terms(benign, direction)
    gamma = min_max_gamma(*terms) if name == "min-max" else min_sum_gamma(*terms)
    dtypes = {key: benign[0][key].dtype for key in means}
    return {key: (means[key] + gamma * direction[key]).to(dtypes[key]) for key in means}


def crafted_weights(
    name: str,
    benign: Sequence[StateDict],
    clients: int,
    liars: int,
    strength: float | None,
    kind: str = "std",
    start: StateDict | None = None,
) -> StateDict:
    """The floating weights every liar of the round sends under attack ``name``."""
    if name == "alie":
        return alie_weights(benign, alie_z(clients, liars) if strength is None else strength)
    return min_max_weights(benign, name, kind, start)


def crafted_round(
    updates: Sequence[ClientUpdate],
    liars: frozenset[str],
    name: str,
    strength: float | None,
    kind: str = "std",
    start: StateDict | None = None,
) -> list[ClientUpdate]:
    """The round's updates in their order, each liar's floating weights replaced by the
    crafted ones (its integer counters kept). ``kind`` and ``start`` (the round's starting
    global weights) pick min-max / min-sum's perturbation."""
    lying = [u for u in updates if u.client_id in liars]
    if not lying:
        return list(updates)
    honest = [u for u in updates if u.client_id not in liars] or lying
    benign = [u.weights for u in honest]
    crafted = crafted_weights(name, benign, len(updates), len(lying), strength, kind, start)
    return [
        dataclasses.replace(u, weights={**u.weights, **crafted}) if u.client_id in liars else u
        for u in updates
    ]
