"""FedAvg (McMahan et al., AISTATS 2017): local SGD, then a sample-weighted average.

Buffer policy: BatchNorm running statistics are averaged like parameters and
``num_batches_tracked`` stays an integer (see :mod:`protofl.aggregation`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from protofl.algorithms.base import (
    AlgorithmContext,
    ClientRound,
    NoHooks,
    average_weights,
    broadcast,
    initial_state,
)
from protofl.payloads import ClientUpdate, GlobalState, ServerMessage, StateDict


@dataclass(frozen=True)
class FedAvgConfig:
    """FedAvg has no options of its own."""


class FedAvg:
    name = "fedavg"

    def __init__(self, config: FedAvgConfig, context: AlgorithmContext) -> None:
        self.config = config

    def init_state(self, weights: StateDict) -> GlobalState:
        return initial_state(weights)

    def message(self, state: GlobalState) -> ServerMessage:
        return broadcast(state)

    def start_client(
        self, message: ServerMessage, model: nn.Module, client_state: StateDict
    ) -> ClientRound:
        return NoHooks()

    def aggregate(self, state: GlobalState, updates: Sequence[ClientUpdate]) -> GlobalState:
        return GlobalState(round=state.round + 1, weights=average_weights(updates))
