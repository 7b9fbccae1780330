"""FedProx (Li et al., "Federated Optimization in Heterogeneous Networks", MLSys 2020).

Client: loss = CE + mu / 2 * ||w - w_global||^2 over the trainable parameters (Eq. 2), with
``w_global`` the weights the round started from. Server: FedAvg.

Default ``mu = 0.01``: the value the FPL reference runs (``utils/best_args.py`` of
WenkeHuang/RethinkFL, Digits and Office-Caltech), within the small grid the FedProx paper
tunes mu over per dataset ({0.001, 0.01, 0.1, 1} as we recall it; its text was not
re-checked).

Deliberate difference: the reference multiplies the term by an extra ``0.01 / 2``
(``models/fedprox.py``), so its effective coefficient is 1e-4; here ``mu`` means what the
paper's Eq. 2 says (``--set fedprox.mu=0.0001`` gives the reference's effective strength).

Buffer policy: BatchNorm running statistics are not parameters, so the proximal term leaves
them alone; the server averages them like FedAvg (``num_batches_tracked`` stays an integer).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from protofl.algorithms.base import (
    AlgorithmContext,
    ClientResult,
    LocalStep,
    average_weights,
    broadcast,
    initial_state,
)
from protofl.errors import ConfigError
from protofl.losses import proximal_loss
from protofl.payloads import ClientUpdate, GlobalState, Prototypes, ServerMessage, StateDict


@dataclass(frozen=True)
class FedProxConfig:
    """FedProx's options."""

    mu: float = 0.01  # proximal strength; RethinkFL best_args, FedProx paper grid

    def __post_init__(self) -> None:
        if not (math.isfinite(self.mu) and self.mu >= 0):
            raise ConfigError(f"fedprox.mu must be a finite number >= 0; got {self.mu}.")


def trainable_anchors(
    model: nn.Module, weights: StateDict
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The model's trainable parameters and, in the same order, their values in ``weights``
    (detached), e.g. the round's global weights for a proximal or dynamic regulariser."""
    parameters: list[torch.Tensor] = []
    anchors: list[torch.Tensor] = []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            parameters.append(parameter)
            anchors.append(weights[name].detach().to(parameter.device))
    return parameters, anchors


class FedProxClientRound:
    """Adds the proximal term towards the round's global weights at every step."""

    collect_prototypes = False
    ce_weight = 1.0

    def __init__(self, mu: float, parameters: list[torch.Tensor], anchors: list[torch.Tensor]):
        self.mu = mu
        self.parameters = parameters
        self.anchors = anchors

    def loss_terms(self, step: LocalStep) -> dict[str, torch.Tensor]:
        return {"proximal": proximal_loss(self.parameters, self.anchors, self.mu)}

    def finish(self, model: nn.Module, prototypes: Prototypes | None) -> ClientResult:
        return ClientResult()


class FedProx:
    name = "fedprox"

    def __init__(self, config: FedProxConfig, context: AlgorithmContext) -> None:
        self.config = config

    def init_state(self, weights: StateDict) -> GlobalState:
        return initial_state(weights)

    def message(self, state: GlobalState) -> ServerMessage:
        return broadcast(state)

    def start_client(
        self, message: ServerMessage, model: nn.Module, client_state: StateDict
    ) -> FedProxClientRound:
        parameters, anchors = trainable_anchors(model, message.weights)
        return FedProxClientRound(self.config.mu, parameters, anchors)

    def aggregate(self, state: GlobalState, updates: Sequence[ClientUpdate]) -> GlobalState:
        return GlobalState(state.round + 1, average_weights(updates))
