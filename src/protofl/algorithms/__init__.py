"""The algorithm registry: one module per algorithm, one line here each."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from protofl.algorithms.base import Algorithm, AlgorithmContext, AlgorithmSpec
from protofl.algorithms.fedavg import FedAvg, FedAvgConfig
from protofl.algorithms.fedbn import FedBN, FedBNConfig
from protofl.algorithms.feddap import FedDAP, FedDAPConfig
from protofl.algorithms.feddyn import FedDyn, FedDynConfig
from protofl.algorithms.fedheal import with_fedheal
from protofl.algorithms.fedopt import FedOpt, FedOptConfig
from protofl.algorithms.fedplvm import FedPLVM, FedPLVMConfig
from protofl.algorithms.fedproc import FedProc, FedProcConfig
from protofl.algorithms.fedproto import FedProto, FedProtoConfig
from protofl.algorithms.fedprox import FedProx, FedProxConfig
from protofl.algorithms.fpl import FPL, FPLConfig
from protofl.algorithms.hooks import ClientResult, ClientRound, LocalStep
from protofl.algorithms.moon import MOON, MOONConfig
from protofl.core.registry import Registry

ALGORITHMS: Registry[AlgorithmSpec] = Registry("algorithm")
ALGORITHMS.add("fedavg", AlgorithmSpec("fedavg", FedAvgConfig, FedAvg, "FedAvg (McMahan 2017)"))
ALGORITHMS.add(
    "fpl",
    AlgorithmSpec("fpl", FPLConfig, FPL, "FPL: CPCL + UPCR (Huang 2023)", sends_prototypes=True),
)
ALGORITHMS.add("fedprox", AlgorithmSpec("fedprox", FedProxConfig, FedProx, "FedProx (Li 2020)"))
ALGORITHMS.add("moon", AlgorithmSpec("moon", MOONConfig, MOON, "MOON (Li, He, Song 2021)"))
ALGORITHMS.add("feddyn", AlgorithmSpec("feddyn", FedDynConfig, FedDyn, "FedDyn (Acar 2021)"))
ALGORITHMS.add("fedopt", AlgorithmSpec("fedopt", FedOptConfig, FedOpt, "FedAdam (Reddi 2021)"))
ALGORITHMS.add(
    "fedproc",
    AlgorithmSpec("fedproc", FedProcConfig, FedProc, "FedProc (Mu 2021)", sends_prototypes=True),
)
ALGORITHMS.add(
    "fedproto",
    AlgorithmSpec("fedproto", FedProtoConfig, FedProto, "FedProto+FedAvg", sends_prototypes=True),
)


def _fpl_ablation(name: str, summary: str, **switches: Any) -> None:
    """Register FPL with some options switched by default (still overridable)."""
    summary = f"FPL ablation: {summary}"
    ALGORITHMS.add(name, AlgorithmSpec(name, FPLConfig, FPL, summary, switches, True))


_fpl_ablation("fpl-cpcl-only", "CE + CPCL (Table 1)", upcr_weight=0.0)
_fpl_ablation("fpl-upcr-only", "CE + UPCR (Table 1)", cpcl_weight=0.0)
_fpl_ablation("fpl-global-consistency", "UPCR to G (T3)", cpcl_weight=0.0, upcr_target="global")
_fpl_ablation("fpl-global-contrast", "CPCL on G (F5)", upcr_weight=0.0, cpcl_prototypes="global")

# After FPL: FedBN and the successors
ALGORITHMS.add(
    "fedbn", AlgorithmSpec("fedbn", FedBNConfig, FedBN, "FedBN: local BatchNorm (Li 2021)")
)
ALGORITHMS.add(
    "fedheal", with_fedheal(ALGORITHMS.get("fedavg"), "fedheal", "FedAvg + FedHEAL (Chen 2024)")
)
ALGORITHMS.add(
    "fedplvm",
    AlgorithmSpec("fedplvm", FedPLVMConfig, FedPLVM, "FedPLVM (Wang 2024)", sends_prototypes=True),
)
ALGORITHMS.add(
    "feddap",
    AlgorithmSpec("feddap", FedDAPConfig, FedDAP, "FedDAP (Le 2026)", sends_prototypes=True),
)
ALGORITHMS.add(
    "fpl-fedheal", with_fedheal(ALGORITHMS.get("fpl"), "fpl-fedheal", "FPL + FedHEAL server step")
)


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
