"""Byzantine-robust weight rules beyond Krum and the geometric median: Bulyan, and the rules
that compare each client's update ``w_i - g`` with the round's starting weights ``g``: norm
clipping (and, with the server's own root-set update, FLTrust).

Like the rules in :mod:`protofl.federation.aggregation` they work entry by entry on whole
state dicts (no flattening into one vector, so nothing is written back at a shifted offset),
combine BatchNorm statistics like parameters and round integer counters, and ignore sample
counts. Distances and coordinate-wise statistics between states equal those between the
updates ``w_i - g`` (``g`` is common to every client), so working on states is exact.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from protofl.core.payloads import StateDict
from protofl.errors import PayloadError
from protofl.federation.aggregation import (
    KeptStates,
    coordinate_median,
    krum_scores,
    squared_distances,
)


@dataclass(frozen=True, eq=False)
class RoundReference:
    """What the update rules compare the clients' states with."""

    start: StateDict | None = None  # the global weights the round's clients started from
    # FLTrust: the server's model after training from ``start`` on its root set this round
    root: StateDict | None = None


def bulyan_selection(distances: torch.Tensor, malicious: int) -> list[int]:
    """Bulyan's first step (El Mhamdi et al., ICML 2018, Sec. 4): apply Krum again and again
    to the states not yet chosen, each time moving Krum's choice into the selection, until
    theta = K - 2f states are chosen. ``distances`` is [K, K] squared distances. Returns the
    chosen indices in the order Krum picked them.

    Ties are not rare here: in the last steps Krum counts a single neighbour, and then both
    states of the closest pair score the same. They go to the state with the smaller summed
    squared distance to all remaining states (the more central one), so the choice does not
    depend on the order the clients arrived in; only then to the lower index."""
    count = distances.shape[0]
    remaining = list(range(count))
    chosen: list[int] = []
    while len(chosen) < count - 2 * malicious:
        local = distances[remaining][:, remaining]  # Krum sees only the remaining states
        scores, spread = krum_scores(local, malicious), local.sum(dim=1)
        best = min(
            range(len(remaining)), key=lambda i: (float(scores[i]), float(spread[i]), remaining[i])
        )
        chosen.append(remaining.pop(best))
    return chosen


def closest_to_median_mean(stacked: torch.Tensor, keep: int) -> torch.Tensor:
    """Bulyan's second step, per coordinate of ``stacked`` [theta, ...]: the mean of the
    ``keep`` (beta) values closest to the coordinate's median."""
    ordered = stacked.sort(dim=0).values
    count = stacked.shape[0]
    middle = ordered[(count - 1) // 2]
    median = middle if count % 2 else (middle + ordered[count // 2]) / 2
    # a stable sort of the distances, so exact ties keep the smaller value first whatever
    # order the clients arrived in (the values are sorted before)
    nearest = (ordered - median).abs().sort(dim=0, stable=True).indices[:keep]
    return ordered.gather(0, nearest).mean(dim=0)


def trim_shortfall(count: int, trim_fraction: float) -> str | None:
    """Why a trimmed mean of ``count`` clients' states would drop nothing, or None. It cuts
    floor(trim_fraction x K) values at each end; where that is 0 for a positive fraction the
    rule is the plain unweighted mean, which a run asking for a defence did not mean."""
    if trim_fraction <= 0 or math.floor(trim_fraction * count) > 0:
        return None
    return (
        f"trimmed-mean with trim_fraction {trim_fraction} drops floor({trim_fraction} x {count})"
        f" = 0 values at each end of the {count} clients of a round, so it would be the plain "
        f"unweighted mean and stop nothing. To fix: set trim_fraction to at least 1/K = "
        f"{1 / count:.4g} (e.g. --set trim_fraction=0.25), or to 0 for that mean on purpose."
    )


def bulyan_shortfall(count: int, assumed_malicious: float) -> str | None:
    """Why Bulyan cannot combine ``count`` clients' states (fewer than 4f + 3), or None."""
    malicious = math.floor(assumed_malicious * count)
    if count >= 4 * malicious + 3:
        return None
    fits = "" if count < 3 else f"lower assumed_malicious below {(count - 3) / 4 / count:.3f}, "
    return (
        f"bulyan needs at least 4f + 3 = {4 * malicious + 3} clients for f = "
        f"floor(assumed_malicious x K) = {malicious}; got K = {count}. To fix: {fits}train "
        "more clients per round, or choose krum."
    )


class Bulyan(KeptStates):
    """Bulyan (El Mhamdi, Guerraoui, Rouault, "The Hidden Vulnerability of Distributed
    Learning in Byzantium", ICML 2018) over Krum: theta = K - 2f states chosen by repeated
    Krum, then per coordinate the mean of the beta = theta - 2f chosen values closest to
    their median. ``f`` is floor(assumed_malicious x K); the paper's guarantee needs
    K >= 4f + 3, and fewer clients are refused (no silent fallback)."""

    def __init__(self, assumed_malicious: float) -> None:
        super().__init__()
        self.assumed_malicious = assumed_malicious

    def malicious(self) -> int:
        problem = bulyan_shortfall(len(self.states), self.assumed_malicious)
        if problem is not None:
            raise PayloadError(problem)
        return math.floor(self.assumed_malicious * len(self.states))

    def chosen(self) -> list[int]:
        """Indices (arrival order) of the theta states the Krum steps selected."""
        if not self.states:
            raise PayloadError("nothing to combine: no client states this round.")
        malicious = self.malicious()
        distances = squared_distances(self.states, self._floating_keys())
        return bulyan_selection(distances, malicious)

    def result(self) -> StateDict:
        malicious = self.malicious()
        picked = sorted(self.chosen())
        keep = len(picked) - 2 * malicious
        combined = {}
        for key, first in self.states[0].items():
            stacked = torch.stack([self.states[i][key].to(torch.float64) for i in picked])
            combined[key] = cast_like(closest_to_median_mean(stacked, keep), first)
        return combined


def cast_like(value: torch.Tensor, template: torch.Tensor) -> torch.Tensor:
    """``value`` (float64) in ``template``'s dtype; integer counters rounded, not truncated."""
    return (
        value.to(template.dtype)
        if template.is_floating_point()
        else value.round().to(template.dtype)
    )


def update_norms(
    states: Sequence[StateDict], start: StateDict, keys: Sequence[str]
) -> torch.Tensor:
    """[K] Euclidean norms of the updates ``w_i - g`` over the entries ``keys``, summed entry
    by entry."""
    total = torch.zeros(len(states), dtype=torch.float64)
    for key in keys:
        origin = start[key].detach().to(torch.float64).cpu()
        for index, state in enumerate(states):
            total[index] += (state[key].detach().to(torch.float64).cpu() - origin).pow(2).sum()
    return total.sqrt()


def clip_factors(norms: torch.Tensor, bound: float) -> torch.Tensor:
    """[K] the factors ``1 / max(1, ||u_i|| / M)`` that clip each update to norm M (Sun et
    al. 2019); an update already inside the ball is left as it is."""
    return 1.0 / torch.clamp(norms / bound, min=1.0) if bound > 0 else torch.ones_like(norms)


def combine_updates(
    states: Sequence[StateDict], start: StateDict, factors: torch.Tensor
) -> StateDict:
    """``g + sum_i c_i (w_i - g)`` on every floating entry (parameters and BatchNorm
    statistics, so a factor <= 1 keeps a running variance between g's and the client's, hence
    positive); integer counters are the plain mean of the clients', rounded (nothing to
    scale: they count batches)."""
    combined = {}
    count = len(states)
    for key, origin in start.items():
        if not origin.is_floating_point():
            mean = sum(s[key].to(torch.float64) for s in states) / count
            combined[key] = cast_like(torch.as_tensor(mean), origin)
            continue
        base = origin.detach().to(torch.float64).cpu()
        moved = torch.zeros_like(base)
        for factor, state in zip(factors.tolist(), states, strict=True):
            moved += factor * (state[key].detach().to(torch.float64).cpu() - base)
        combined[key] = cast_like(base + moved, origin).to(origin.device)
    return combined


class NormClip(KeptStates):
    """Norm clipping (Sun, Kairouz, Suresh, McMahan, "Can You Really Backdoor Federated
    Learning?", 2019): each update ``w_i - g`` scaled to norm at most M, then the plain mean
    of the clipped updates added to ``g``. ``clip_norm`` > 0 fixes M; 0 takes M as the
    median of the round's update norms, as FLAME does (Nguyen et al., USENIX Security 2022),
    so at least half the clients pass unclipped whatever the model's scale."""

    def __init__(self, reference: RoundReference, clip_norm: float) -> None:
        super().__init__()
        if reference.start is None:
            raise PayloadError("norm-clip needs the weights the round started from.")
        self.start, self.clip_norm = reference.start, clip_norm

    def bound(self, norms: torch.Tensor) -> float:
        return self.clip_norm if self.clip_norm > 0 else float(coordinate_median(norms))

    def result(self) -> StateDict:
        if not self.states:
            raise PayloadError("nothing to combine: no client states this round.")
        norms = update_norms(self.states, self.start, self._floating_keys())
        factors = clip_factors(norms, self.bound(norms)) / len(self.states)
        return combine_updates(self.states, self.start, factors)


def update_dots(
    states: Sequence[StateDict], start: StateDict, root: StateDict, keys: Sequence[str]
) -> torch.Tensor:
    """[K] inner products <w_i - g, r - g> of each client's update with the server's root
    update, summed entry by entry."""
    total = torch.zeros(len(states), dtype=torch.float64)
    for key in keys:
        origin = start[key].detach().to(torch.float64).cpu()
        server = (root[key].detach().to(torch.float64).cpu() - origin).flatten()
        for index, state in enumerate(states):
            mine = (state[key].detach().to(torch.float64).cpu() - origin).flatten()
            total[index] += mine @ server
    return total


def fltrust_factors(dots: torch.Tensor, norms: torch.Tensor, root_norm: float) -> torch.Tensor:
    """[K] the factor c_i of each update in FLTrust's ``g + sum_i c_i u_i`` (Cao et al., NDSS
    2021, Eq. 4-6): trust TS_i = ReLU(cos(u_i, g0)); each update rescaled to ||g0||, i.e.
    by ||g0|| / ||u_i||; the trust-weighted mean, c_i = TS_i ||g0|| / ||u_i|| / sum_j TS_j.
    An update of norm 0 has no direction and earns no trust; when nobody earns any, every
    factor is 0 and the model stays where it was."""
    moved = norms > 0
    safe = torch.where(moved, norms, torch.ones_like(norms))
    cosine = torch.where(moved, dots / (safe * max(root_norm, 1e-300)), torch.zeros_like(dots))
    trust = cosine.clamp(min=0.0) if root_norm > 0 else torch.zeros_like(dots)
    if float(trust.sum()) <= 0:
        return torch.zeros_like(trust)
    return trust * root_norm / safe / trust.sum()


class FLTrust(KeptStates):
    """FLTrust (Cao, Fang, Liu, Gong, "FLTrust: Byzantine-robust Federated Learning via
    Trust Bootstrapping", NDSS 2021): the server trains on a small root set of its own each
    round, and each client's update counts by the ReLU of its cosine with the server's
    update, rescaled to the server update's norm. The root update ``reference.root`` comes
    from the round loop (the simulator trains it); integer counters are the plain mean of
    the clients'."""

    def __init__(self, reference: RoundReference) -> None:
        super().__init__()
        if reference.start is None or reference.root is None:
            raise PayloadError(
                "fltrust needs the round's starting weights and the server's model trained on "
                "its root set; the simulator provides both (root_size samples drawn from the "
                "training data), the Flower server does not hold a root set."
            )
        self.start, self.root = reference.start, reference.root

    def factors(self) -> torch.Tensor:
        """[K] each client's factor in ``g + sum_i c_i u_i`` (arrival order)."""
        if not self.states:
            raise PayloadError("nothing to combine: no client states this round.")
        keys = self._floating_keys()
        norms = update_norms(self.states, self.start, keys)
        root_norm = float(update_norms([self.root], self.start, keys)[0])
        dots = update_dots(self.states, self.start, self.root, keys)
        return fltrust_factors(dots, norms, root_norm)

    def result(self) -> StateDict:
        return combine_updates(self.states, self.start, self.factors())
