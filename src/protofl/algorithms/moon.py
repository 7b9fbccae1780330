"""MOON, model-contrastive federated learning (Li, He, Song, CVPR 2021).

Client: loss = CE + mu * L_con with (Eq. 3)
``L_con = -log( exp(cos(z, z_glob)/tau) / (exp(cos(z, z_glob)/tau) + exp(cos(z, z_prev)/tau)) )``
where ``z`` is the local model's feature of a sample, ``z_glob`` the round's global model's
(positive) and ``z_prev`` the client's previous local model's (negative), all on the same
augmented batch. Server: FedAvg.

Features: MOON puts a two-layer projection head on the pooled features; protofl's models
have none, so ``z`` is ``model.features(x)``, exactly what the FPL reference's MOON
(``models/moon.py``) contrasts.

The global copy and the previous model are built in :meth:`MOON.start_client` (a deep copy
of the worker, then ``load_state_dict``) from the message's weights and from the client's
own state, and run in eval mode without gradient, as MOON's code freezes them. The previous
model is the client's model at the end of its last round; it stays on the client
(``ClientResult.state``), never through the server.

First round: there is no previous model, so the contrastive term is 0 and the round is
FedAvg. This is what MOON's code does (``QinbinLi/MOON`` ``main.py``: the model pool is
empty in round 0, so the contrastive logits have a single column and their cross-entropy
is 0). The FPL reference instead contrasts with each client's random initialisation.

Defaults ``mu = 5``, ``temperature = 0.5``: the FPL reference's ``utils/best_args.py``
(Digits and Office-Caltech) and MOON's CIFAR-10 setting (``QinbinLi/MOON`` README
``--mu=5``, ``main.py`` ``--temperature`` default 0.5).

Buffer policy: FedAvg (BatchNorm running statistics averaged, ``num_batches_tracked`` an
integer); the frozen copies carry the global and previous running statistics and, in eval
mode, use them without updating them.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from protofl.algorithms.base import Algorithm
from protofl.algorithms.hooks import ClientResult, ClientRound, ClientStart, LocalStep
from protofl.algorithms.losses import model_contrastive_loss
from protofl.core.payloads import Prototypes, StateDict
from protofl.errors import ConfigError
from protofl.models.base import feature_model

PREVIOUS = "previous_model."  # prefix of the previous local model's entries in client state


@dataclass(frozen=True)
class MOONConfig:
    """MOON's options; defaults from the FPL reference and MOON's CIFAR-10 setting."""

    mu: float = 5.0  # weight of the model-contrastive term
    temperature: float = 0.5

    def __post_init__(self) -> None:
        if not (math.isfinite(self.mu) and self.mu >= 0):
            raise ConfigError(f"moon.mu must be a finite number >= 0; got {self.mu}.")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ConfigError(f"moon.temperature must be > 0; got {self.temperature}.")


def frozen_copy(model: nn.Module, weights: StateDict) -> nn.Module:
    """A deep copy of ``model`` holding ``weights``, in eval mode, without gradients."""
    frozen = copy.deepcopy(model)
    frozen.load_state_dict(weights)
    frozen.eval()
    frozen.requires_grad_(False)
    return frozen


class MOONClientRound(ClientRound):
    """Contrasts the local feature with the global (positive) and previous (negative) ones."""

    def __init__(self, config: MOONConfig, frozen: tuple[nn.Module, nn.Module] | None) -> None:
        self.config = config
        self.frozen = frozen  # (global model, previous local model), or None in round 1

    def loss_terms(self, step: LocalStep) -> dict[str, torch.Tensor]:
        if self.frozen is None:  # no previous model yet: no negative, MOON's term is 0
            return {"contrastive": step.features.new_zeros(())}
        global_model, previous_model = self.frozen
        with torch.no_grad():
            positive = feature_model(global_model).features(step.inputs).to(step.features.dtype)
            negative = feature_model(previous_model).features(step.inputs).to(step.features.dtype)
        loss = model_contrastive_loss(step.features, positive, negative, self.config.temperature)
        return {"contrastive": self.config.mu * loss}

    def finish(self, model: nn.Module, prototypes: Prototypes | None) -> ClientResult:
        previous = {PREVIOUS + k: v.detach().clone() for k, v in model.state_dict().items()}
        return ClientResult(state=previous)


class MOON(Algorithm):
    name = "moon"
    config: MOONConfig

    def start_client(self, start: ClientStart) -> MOONClientRound:
        previous = {k[len(PREVIOUS) :]: v for k, v in start.state.items() if k.startswith(PREVIOUS)}
        if not previous:
            return MOONClientRound(self.config, None)
        model = start.model
        frozen = (frozen_copy(model, start.message.weights), frozen_copy(model, previous))
        return MOONClientRound(self.config, frozen)
