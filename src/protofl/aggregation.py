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


def sample_weights(num_samples: Sequence[int]) -> list[float]:
    """FedAvg's weights |D_m| / |D|."""
    total = sum(num_samples)
    if total <= 0 or any(n < 0 for n in num_samples):
        raise PayloadError(f"sample counts must be >= 0 with a positive total; got {num_samples}.")
    return [n / total for n in num_samples]


def weighted_average(states: Sequence[StateDict], weights: Sequence[float]) -> StateDict:
    """Weighted average of state dicts with identical keys, shapes and dtypes."""
    if not states or len(states) != len(weights):
        raise PayloadError(f"need one weight per state; got {len(states)} states, {len(weights)}.")
    reference = states[0]
    for index, state in enumerate(states[1:], start=1):
        if state.keys() != reference.keys():
            missing = sorted(reference.keys() - state.keys())[:3]
            extra = sorted(state.keys() - reference.keys())[:3]
            raise PayloadError(
                f"state {index} does not match state 0: missing {missing}, extra {extra}."
            )
    return {key: _average_entry([s[key] for s in states], weights, key) for key in reference}


def _average_entry(tensors: list[torch.Tensor], weights: Sequence[float], key: str) -> torch.Tensor:
    first = tensors[0]
    for tensor in tensors[1:]:
        if tensor.shape != first.shape or tensor.dtype != first.dtype:
            raise PayloadError(
                f"{key}: shapes/dtypes differ across clients: {tuple(first.shape)} {first.dtype} "
                f"vs {tuple(tensor.shape)} {tensor.dtype}."
            )
    if first.is_floating_point():
        total = torch.zeros_like(first)
        for tensor, weight in zip(tensors, weights, strict=True):
            total.add_(tensor, alpha=weight)
        return total
    accumulated = torch.zeros(first.shape, dtype=torch.float64, device=first.device)
    for tensor, weight in zip(tensors, weights, strict=True):
        accumulated.add_(tensor.double(), alpha=weight)
    return accumulated.round().to(first.dtype)
