"""Byzantine-robust weight rules beyond Krum and the geometric median: Bulyan.

Like the rules in :mod:`protofl.federation.aggregation` they work entry by entry on whole
state dicts (no flattening into one vector, so nothing is written back at a shifted offset),
combine BatchNorm statistics like parameters and round integer counters, and ignore sample
counts. Distances and coordinate-wise statistics between states equal those between the
updates ``w_i - g`` (``g`` is common to every client), so working on states is exact.
"""

from __future__ import annotations

import math

import torch

from protofl.core.payloads import StateDict
from protofl.errors import PayloadError
from protofl.federation.aggregation import KeptStates, krum_scores, squared_distances


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
        count = len(self.states)
        malicious = math.floor(self.assumed_malicious * count)
        if count < 4 * malicious + 3:
            raise PayloadError(
                f"bulyan needs at least 4f + 3 = {4 * malicious + 3} clients for "
                f"f = floor(assumed_malicious x K) = {malicious}; got K = {count}. Lower "
                f"assumed_malicious below {(count - 3) / 4 / count:.3f} (then f = "
                f"{(count - 3) // 4}), train more clients per round, or choose krum."
            )
        return malicious

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
