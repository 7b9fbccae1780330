"""The algorithm registry: one module per algorithm, one line here each."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from protofl.algorithms.base import (
    Algorithm,
    AlgorithmContext,
    AlgorithmSpec,
    ClientResult,
    ClientRound,
    LocalStep,
)
from protofl.algorithms.fedavg import FedAvg, FedAvgConfig
from protofl.algorithms.fpl import FPL, FPLConfig
from protofl.registry import Registry

ALGORITHMS: Registry[AlgorithmSpec] = Registry("algorithm")
ALGORITHMS.add("fedavg", AlgorithmSpec("fedavg", FedAvgConfig, FedAvg, "FedAvg (McMahan 2017)"))
ALGORITHMS.add("fpl", AlgorithmSpec("fpl", FPLConfig, FPL, "FPL: CPCL + UPCR (Huang 2023)"))


def build_algorithm(name: str, options: Mapping[str, Any], context: AlgorithmContext) -> Algorithm:
    """Build the registered algorithm ``name`` with its options (unknown keys are errors)."""
    spec = ALGORITHMS.get(name)
    algorithm: Algorithm = spec.factory(spec.make_config(options), context)
    return algorithm


__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "AlgorithmContext",
    "AlgorithmSpec",
    "ClientResult",
    "ClientRound",
    "LocalStep",
    "build_algorithm",
]
