"""Combining model states, with an explicit policy for every kind of tensor.

Policy (held by tests): floating-point entries -- parameters and BatchNorm running
mean/var -- are combined with the given rule. Integer entries -- BatchNorm's
``num_batches_tracked`` -- are combined too and rounded to the nearest integer, keeping their
dtype, so a counter never turns into a float (other frameworks hand back 1.75 here).

Weight rules (``RunConfig.aggregation``, built by :func:`protofl.federation.rules.make_combiner`):
``mean`` (FedAvg's sample-weighted mean, folded as updates arrive, bounded memory), ``krum``
and ``multi-krum`` (Blanchard et al., NeurIPS 2017), ``geometric-median`` (RFA; Weiszfeld),
``median`` (coordinate-wise) and ``trimmed-mean`` (coordinate-wise mean after dropping the
``trim_fraction`` largest and smallest values), the two robust rules of Yin et al.,
"Byzantine-Robust Distributed Learning", ICML 2018; Bulyan, norm clipping and FLTrust are in
:mod:`protofl.federation.defences`. The robust rules ignore sample counts (a client cannot
buy influence by claiming more samples) and must keep every client's state until the round
ends; ``rfa`` is the exception: the geometric median with each client weighted by its sample
count, as RFA's paper defines it, for federations whose small domains should not gain weight.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import torch

from protofl.core.payloads import StateDict
from protofl.errors import PayloadError

RUNNING_STATISTICS = ("running_mean", "running_var", "num_batches_tracked")


def is_parameter_entry(key: str, value: torch.Tensor, parameter_names: frozenset[str]) -> bool:
    """Whether a state-dict entry is a trained parameter rather than a buffer.

    With the model's parameter names known (the runner passes them) that decides; without
    them, floating-point entries not named like a normalisation layer's running statistic
    count as parameters.
    """
    if parameter_names:
        return key in parameter_names
    return value.is_floating_point() and key.rsplit(".", 1)[-1] not in RUNNING_STATISTICS


def sample_weights(num_samples: Sequence[int]) -> list[float]:
    """FedAvg's weights |D_m| / |D|."""
    total = sum(num_samples)
    if total <= 0 or any(n < 0 for n in num_samples):
        raise PayloadError(f"sample counts must be >= 0 with a positive total; got {num_samples}.")
    return [n / total for n in num_samples]


class RunningAverage:
    """A weighted average of state dicts folded in one at a time.

    Memory is one state (two for integer entries' float64 sums) however many states are
    added, so a round's aggregation does not keep a model copy per client.
    """

    def __init__(self) -> None:
        self._sums: StateDict = {}
        self._template: StateDict = {}
        self._signature: Signature = {}
        self._total = 0.0
        self.count = 0

    def add(self, state: StateDict, weight: float) -> None:
        if weight < 0:
            raise PayloadError(f"averaging weights must be >= 0; got {weight}.")
        if not self._sums:
            self._template = {k: v.new_empty(0) for k, v in state.items()}
            self._sums = {k: torch.zeros_like(v, dtype=_sum_dtype(v)) for k, v in state.items()}
            self._signature = signature(state)
        self._check(state)
        for key, value in state.items():
            self._sums[key].add_(value.to(self._sums[key].dtype), alpha=weight)
        self._total += weight
        self.count += 1

    def result(self) -> StateDict:
        if not self.count or self._total <= 0:
            raise PayloadError("nothing to average: no states, or their weights sum to 0.")
        averaged = {}
        for key, total in self._sums.items():
            mean = total / self._total
            dtype = self._template[key].dtype
            averaged[key] = mean if total.dtype == dtype else mean.round().to(dtype)
        return averaged

    def _check(self, state: StateDict) -> None:
        _check_alike(self._signature, state, self.count)


def _sum_dtype(value: torch.Tensor) -> torch.dtype:
    # integer counters are summed in float64 and rounded at the end
    return value.dtype if value.is_floating_point() else torch.float64


def weighted_average(states: Sequence[StateDict], weights: Sequence[float]) -> StateDict:
    """Weighted average of state dicts with identical keys, shapes and dtypes."""
    if not states or len(states) != len(weights):
        raise PayloadError(f"need one weight per state; got {len(states)} states, {len(weights)}.")
    average = RunningAverage()
    for state, weight in zip(states, weights, strict=True):
        average.add(state, weight)
    return average.result()


class WeightCombiner(Protocol):
    """Combines the clients' states of one round, given one at a time."""

    def add(self, state: StateDict, num_samples: int) -> None: ...

    def result(self) -> StateDict: ...


@runtime_checkable
class ReportsShares(Protocol):
    """A combiner whose result is a weighted mean of the client states, and that says with
    which weights (after ``result()``, in the order the states were added)."""

    def shares(self) -> list[float]: ...


class SampleMean:
    """FedAvg's mean weighted by sample count, folded as states arrive."""

    def __init__(self) -> None:
        self.average = RunningAverage()

    def add(self, state: StateDict, num_samples: int) -> None:
        self.average.add(state, float(num_samples))

    def result(self) -> StateDict:
        return self.average.result()


class UniformMean(SampleMean):
    """The plain mean over clients, folded as states arrive (FedDyn's server step)."""

    def add(self, state: StateDict, num_samples: int) -> None:
        self.average.add(state, 1.0)


class CoordinateRule:
    """Keeps every state and combines each coordinate across clients: median or trimmed mean."""

    def __init__(self, trim_fraction: float | None) -> None:
        self.trim_fraction = trim_fraction  # None: median
        self.states: list[StateDict] = []

    def add(self, state: StateDict, num_samples: int) -> None:
        if self.states:
            _check_alike(signature(self.states[0]), state, len(self.states))
        self.states.append(state)

    def result(self) -> StateDict:
        if not self.states:
            raise PayloadError("nothing to combine: no client states this round.")
        combined = {}
        for key, first in self.states[0].items():
            stacked = torch.stack([s[key].to(torch.float64) for s in self.states])  # [K, ...]
            if self.trim_fraction is None:
                value = coordinate_median(stacked)
            else:
                value = trimmed_mean(stacked, self.trim_fraction)
            combined[key] = (
                value.to(first.dtype)
                if first.is_floating_point()
                else (value.round().to(first.dtype))
            )
        return combined


def coordinate_median(stacked: torch.Tensor) -> torch.Tensor:
    """Median over dim 0 of ``[K, ...]``; the mean of the two middle values when K is even."""
    ordered = stacked.sort(dim=0).values
    count = stacked.shape[0]
    middle = ordered[(count - 1) // 2]
    return middle if count % 2 else (middle + ordered[count // 2]) / 2


def trimmed_mean(stacked: torch.Tensor, fraction: float) -> torch.Tensor:
    """Mean over dim 0 of ``[K, ...]`` after dropping floor(fraction*K) values at each end."""
    count = stacked.shape[0]
    cut = math.floor(fraction * count)
    if count - 2 * cut < 1:
        raise PayloadError(f"trimmed-mean with fraction {fraction} leaves no client of {count}.")
    return stacked.sort(dim=0).values[cut : count - cut].mean(dim=0)


class KeptStates:
    """Keeps every client's state of the round (the rules that compare whole states)."""

    def __init__(self) -> None:
        self.states: list[StateDict] = []

    def add(self, state: StateDict, num_samples: int) -> None:
        if self.states:
            _check_alike(signature(self.states[0]), state, len(self.states))
        self.states.append(state)

    def _floating_keys(self) -> list[str]:
        return [k for k, v in self.states[0].items() if v.is_floating_point()]


def squared_distances(states: Sequence[StateDict], keys: Sequence[str]) -> torch.Tensor:
    """[K, K] squared Euclidean distances between states over the entries ``keys``, summed
    entry by entry (no flattening into one vector, so no offsets to get wrong)."""
    count = len(states)
    total = torch.zeros(count, count, dtype=torch.float64)
    for key in keys:
        stacked = torch.stack([s[key].detach().to(torch.float64).flatten() for s in states])
        total += torch.cdist(stacked.cpu(), stacked.cpu()).pow(2)
    return total


def krum_scores(distances: torch.Tensor, malicious: int) -> torch.Tensor:
    """Krum's score of each of K states (Blanchard et al., NeurIPS 2017): the sum of its
    squared distances to its K - f - 2 nearest other states (at least one)."""
    count = distances.shape[0]
    neighbours = max(count - malicious - 2, 1)
    others = distances + torch.diag(torch.full((count,), float("inf"), dtype=distances.dtype))
    nearest = others.sort(dim=1).values[:, : min(neighbours, count - 1)]
    return nearest.sum(dim=1)


class Krum(KeptStates):
    """Krum: the one client state with the lowest score, whole (BatchNorm buffers and
    counters included); Multi-Krum: the plain mean of the K - f lowest-scoring states.
    ``f`` is floor(assumed_malicious x K). Ties go to the client that arrived first; the
    result does not depend on arrival order otherwise. Sample counts are ignored."""

    def __init__(self, assumed_malicious: float, multi: bool = False) -> None:
        super().__init__()
        self.assumed_malicious, self.multi = assumed_malicious, multi
        self.picked: list[int] = []  # what result() kept

    def shares(self) -> list[float]:
        """Each state's share of the result (after :meth:`result`): 1/m for the m kept."""
        if not self.picked:
            raise RuntimeError("Krum.shares() reports the last result(); call result() first.")
        share = 1.0 / len(self.picked)
        return [share if i in self.picked else 0.0 for i in range(len(self.states))]

    def chosen(self) -> list[int]:
        """Indices (arrival order) of the states Krum keeps."""
        if not self.states:
            raise PayloadError("nothing to combine: no client states this round.")
        count = len(self.states)
        malicious = math.floor(self.assumed_malicious * count)
        scores = krum_scores(squared_distances(self.states, self._floating_keys()), malicious)
        order = sorted(range(count), key=lambda i: (float(scores[i]), i))
        return order[: max(count - malicious, 1)] if self.multi else order[:1]

    def result(self) -> StateDict:
        picked = self.picked = self.chosen()
        if len(picked) == 1:
            return {k: v.clone() for k, v in self.states[picked[0]].items()}
        return weighted_average([self.states[i] for i in picked], [1.0] * len(picked))


def weiszfeld_weights(
    distances_to: Callable[[torch.Tensor], torch.Tensor],
    count: int,
    iterations: int = 100,
    tolerance: float = 1e-10,
    prior: torch.Tensor | None = None,
) -> torch.Tensor:
    """The weights of the geometric median as a weighted mean of K points (Weiszfeld's
    iteration, smoothed by ``tolerance`` so a point at the median does not divide by 0).
    ``distances_to(weights)`` returns each point's distance to the weighted mean. ``prior``
    (alpha, summing to 1; equal if None) weighs the points: the minimiser of
    sum_i alpha_i ||z - x_i||, whose Weiszfeld step weights point i by alpha_i / d_i."""
    alpha = (
        torch.full((count,), 1.0 / count, dtype=torch.float64)
        if prior is None
        else prior.to(torch.float64)
    )
    weights = alpha
    for _ in range(iterations):
        inverse = alpha / distances_to(weights).clamp(min=tolerance)
        new = inverse / inverse.sum()
        if torch.allclose(new, weights, rtol=0, atol=1e-12):
            return new
        weights = new
    return weights


class GeometricMedian(KeptStates):
    """The geometric median of the client states (RFA, Pillutla et al., IEEE TSP 2022):
    the point minimising the sum of Euclidean distances to them, by Weiszfeld's iteration,
    as a weighted mean of the states; integer counters take the same weights, rounded.
    ``by_samples=False`` (``geometric-median``) counts every client once; ``True`` (``rfa``)
    weighs each distance by the client's share of the samples, as RFA's paper does (a count
    each client reports itself)."""

    def __init__(self, by_samples: bool = False) -> None:
        super().__init__()
        self.by_samples = by_samples
        self.num_samples: list[int] = []
        self.final_weights: list[float] = []  # what result() used

    def add(self, state: StateDict, num_samples: int) -> None:
        super().add(state, num_samples)
        self.num_samples.append(num_samples)

    def weights(self) -> torch.Tensor:
        if not self.states:
            raise PayloadError("nothing to combine: no client states this round.")
        # Every Weiszfeld step needs each state's distance to a weighted mean of the states,
        # which the K x K Gram matrix of the states (taken relative to state 0, so large
        # parameter values do not cancel) gives without touching the parameters again:
        # ||x_i - sum_k w_k x_k||^2 = G_ii - 2 (G w)_i + w^T G w when sum_k w_k = 1.
        gram = torch.zeros(len(self.states), len(self.states), dtype=torch.float64)
        for key in self._floating_keys():
            values = torch.stack(
                [s[key].detach().to(torch.float64).flatten().cpu() for s in self.states]
            )
            values -= values[0].clone()
            gram += values @ values.T

        def distances_to(weights: torch.Tensor) -> torch.Tensor:
            squared = gram.diagonal() - 2 * (gram @ weights) + weights @ gram @ weights
            return squared.clamp(min=0).sqrt()

        prior = (
            torch.tensor(sample_weights(self.num_samples), dtype=torch.float64)
            if self.by_samples
            else None
        )
        return weiszfeld_weights(distances_to, len(self.states), prior=prior)

    def result(self) -> StateDict:
        self.final_weights = self.weights().tolist()
        return weighted_average(self.states, self.final_weights)

    def shares(self) -> list[float]:
        """Each state's Weiszfeld weight in the result (after :meth:`result`)."""
        if not self.final_weights:
            raise RuntimeError(
                "GeometricMedian.shares() reports the last result(); call result() first."
            )
        return list(self.final_weights)


Signature = dict[str, tuple[tuple[int, ...], torch.dtype]]


def signature(state: StateDict) -> Signature:
    """Every entry's shape and dtype, which all clients' states must share."""
    return {key: (tuple(value.shape), value.dtype) for key, value in state.items()}


def _check_alike(first: Signature, state: StateDict, index: int) -> None:
    if state.keys() != first.keys():
        missing = sorted(first.keys() - state.keys())[:3]
        extra = sorted(state.keys() - first.keys())[:3]
        raise PayloadError(
            f"state {index} does not match state 0: missing {missing}, extra {extra}."
        )
    for key, value in state.items():
        shape, dtype = first[key]
        if tuple(value.shape) != shape or value.dtype != dtype:
            raise PayloadError(
                f"{key}: shapes/dtypes differ across clients: {shape} {dtype} vs "
                f"{tuple(value.shape)} {value.dtype}."
            )
