"""FedAvg (McMahan et al., AISTATS 2017): local SGD, then a sample-weighted average.

Everything here is :class:`~protofl.algorithms.base.Algorithm`'s default. Buffer policy:
BatchNorm running statistics are averaged like parameters and ``num_batches_tracked`` stays
an integer (see :mod:`protofl.federation.aggregation`).
"""

from __future__ import annotations

from dataclasses import dataclass

from protofl.algorithms.base import Algorithm


@dataclass(frozen=True)
class FedAvgConfig:
    """FedAvg has no options of its own."""


class FedAvg(Algorithm):
    name = "fedavg"
