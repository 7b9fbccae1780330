"""The weight rules by name: what ``RunConfig.aggregation`` selects, built fresh per round."""

from __future__ import annotations

from protofl.errors import PayloadError
from protofl.federation.aggregation import (
    CoordinateRule,
    GeometricMedian,
    Krum,
    SampleMean,
    WeightCombiner,
)
from protofl.federation.defences import Bulyan, FLTrust, NormClip, RoundReference

# protofl.config.robustness.WEIGHT_RULES lists the same names (a test holds them equal)
RULES = (
    "mean",
    "median",
    "trimmed-mean",
    "krum",
    "multi-krum",
    "geometric-median",
    "rfa",
    "bulyan",
    "norm-clip",
    "fltrust",
)


def make_combiner(
    rule: str,
    trim_fraction: float = 0.1,
    assumed_malicious: float = 0.2,
    clip_norm: float = 0.0,
    reference: RoundReference | None = None,
) -> WeightCombiner:
    """A fresh combiner for a weight rule (names checked when the config is built).
    ``reference`` holds what the update rules (norm-clip, fltrust) measure updates from."""
    if rule == "mean":
        return SampleMean()
    if rule == "median":
        return CoordinateRule(None)
    if rule == "trimmed-mean":
        return CoordinateRule(trim_fraction)
    if rule in ("krum", "multi-krum"):
        return Krum(assumed_malicious, multi=rule == "multi-krum")
    if rule in ("geometric-median", "rfa"):
        return GeometricMedian(by_samples=rule == "rfa")
    if rule == "bulyan":
        return Bulyan(assumed_malicious)
    if rule == "norm-clip":
        return NormClip(reference or RoundReference(), clip_norm)
    if rule == "fltrust":
        return FLTrust(reference or RoundReference())
    raise PayloadError(f"unknown weight rule {rule!r}; expected one of {', '.join(RULES)}.")
