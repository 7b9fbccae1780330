"""Averaging of model states, with an explicit policy for every kind of tensor.

Policy (held by tests): floating-point entries -- parameters and BatchNorm running
mean/var -- are averaged with the given weights. Integer entries -- BatchNorm's
``num_batches_tracked`` -- are averaged too and rounded to the nearest integer, keeping their
dtype, so a counter never turns into a float (other frameworks hand back 1.75 here).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from protofl.errors import PayloadError
from protofl.payloads import StateDict

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
        self._total = 0.0
        self.count = 0

    def add(self, state: StateDict, weight: float) -> None:
        if weight < 0:
            raise PayloadError(f"averaging weights must be >= 0; got {weight}.")
        if not self._sums:
            self._template = {k: v.new_empty(0) for k, v in state.items()}
            self._sums = {k: torch.zeros_like(v, dtype=_sum_dtype(v)) for k, v in state.items()}
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
        if state.keys() != self._sums.keys():
            missing = sorted(self._sums.keys() - state.keys())[:3]
            extra = sorted(state.keys() - self._sums.keys())[:3]
            raise PayloadError(
                f"state {self.count} does not match state 0: missing {missing}, extra {extra}."
            )
        for key, value in state.items():
            first = self._sums[key]
            if value.shape != first.shape or value.dtype != self._template[key].dtype:
                raise PayloadError(
                    f"{key}: shapes/dtypes differ across clients: {tuple(first.shape)} "
                    f"{self._template[key].dtype} vs {tuple(value.shape)} {value.dtype}."
                )


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
