"""FedProx (Li et al., "Federated Optimization in Heterogeneous Networks", MLSys 2020).

Client: loss = CE + mu / 2 * ||w - w_global||^2 over the trainable parameters (Eq. 2), with
``w_global`` the round's starting weights. Server: FedAvg. Default ``mu = 0.01``: the FPL
reference's (RethinkFL ``utils/best_args.py``, Digits and Office-Caltech), inside the grid
the FedProx paper tunes mu over. Deliberate difference: the reference multiplies the term by
an extra ``0.01 / 2`` (``models/fedprox.py``); here ``mu`` means what Eq. 2 says
(``--set fedprox.mu=0.0001`` gives the reference's strength). Buffer policy: the proximal
term leaves BatchNorm statistics alone; the server averages them like FedAvg.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from protofl.algorithms.base import Algorithm, trainable_anchors
from protofl.algorithms.hooks import ClientRound, ClientStart, LocalStep
from protofl.algorithms.losses import proximal_loss
from protofl.errors import ConfigError


@dataclass(frozen=True)
class FedProxConfig:
    """FedProx's options."""

    mu: float = 0.01  # proximal strength; RethinkFL best_args, FedProx paper grid

    def __post_init__(self) -> None:
        if not (math.isfinite(self.mu) and self.mu >= 0):
            raise ConfigError(f"fedprox.mu must be a finite number >= 0; got {self.mu}.")


class FedProxClientRound(ClientRound):
    """Adds the proximal term towards the round's global weights at every step."""

    def __init__(self, mu: float, parameters: list[torch.Tensor], anchors: list[torch.Tensor]):
        self.mu, self.parameters, self.anchors = mu, parameters, anchors

    def loss_terms(self, step: LocalStep) -> dict[str, torch.Tensor]:
        return {"proximal": proximal_loss(self.parameters, self.anchors, self.mu)}


class FedProx(Algorithm):
    name = "fedprox"
    config: FedProxConfig

    def start_client(self, start: ClientStart) -> FedProxClientRound:
        _, parameters, anchors = trainable_anchors(start.model, start.message.weights)
        return FedProxClientRound(self.config.mu, parameters, anchors)
