"""FedDyn, federated learning with dynamic regularisation (Acar et al., ICLR 2021,
Algorithm 1).

Client i, starting from the global weights ``w_g``, minimises on its *local* parameters
``L_i(w) - <g_i, w> + alpha / 2 * ||w - w_g||^2``, then updates its linear-term state
``g_i <- g_i - alpha * (w_i - w_g)`` (``g_i`` starts at 0 and stays on the client, in
``ClientResult.state`` as ``linear.<name>``). Server: ``h <- h - alpha * (1/m) sum_i
(w_i - w_g)`` and ``w_g <- (1/m) sum_i w_i - h / alpha``, with ``h`` (``h.<key>``) in
``GlobalState.tensors``, never broadcast. ``m`` is the number of clients in the federation
and the mean over the clients whose updates arrived is unweighted, as in the paper; when
the server leaves a client out (a rejected update), the sum in ``h`` runs over the others.

Default ``alpha = 0.01``: the FedDyn authors' code (``alpemreacar/FedDyn``
``example_cifar_10.py``: ``alpha_coef = 1e-2``), also MarsFL's default (``utils/cfg.py``
of WenkeHuang/MarsFL, ``reg_lamb = 1e-2``). The FPL paper does not give its FedDyn value.

Buffer policy: the regulariser and ``h`` cover trainable parameters only (on the server:
the model's parameter names, :meth:`AlgorithmContext.is_parameter`). BatchNorm running
statistics take
the sample-weighted FedAvg average; ``num_batches_tracked`` stays an integer.

Deliberate difference from the reference code: RethinkFL's ``models/feddyn.py`` builds the
regulariser from the *global* model's parameters (a constant for the local model, so it
puts no gradient on what is trained) and never forms ``h``; here the regulariser acts on
the local parameters and the server applies the ``h`` correction. The authors' code also
scales alpha per client by its data share; we keep the paper's single alpha.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from protofl.algorithms.base import Algorithm, RoundUpdates, trainable_anchors
from protofl.algorithms.hooks import ClientResult, ClientRound, ClientStart, LocalStep
from protofl.algorithms.losses import dynamic_regularizer
from protofl.core.payloads import GlobalState, Prototypes, StateDict
from protofl.errors import ConfigError
from protofl.federation.aggregation import UniformMean, WeightCombiner
from protofl.federation.defences import RoundReference

LINEAR = "linear."  # client state: g_i per parameter
SERVER = "h."  # server state: h per parameter entry
UNIFORM = "uniform"  # the fold of the plain (unweighted) mean of the clients' weights


def linear_term_update(
    linear: torch.Tensor, local: torch.Tensor, global_weight: torch.Tensor, alpha: float
) -> torch.Tensor:
    """The client's new linear term ``g_i - alpha * (w_i - w_g)`` after local training."""
    return linear - alpha * (local - global_weight)


def server_update(
    global_weight: torch.Tensor,
    client_mean: torch.Tensor,
    h: torch.Tensor,
    alpha: float,
    participation: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """FedDyn's server step for one entry: (new global weight, new h), given the unweighted
    mean of the arrived clients' weights, the previous ``h`` and the fraction of all
    clients that arrived (``|P_t| / m``)."""
    new_h = h - alpha * participation * (client_mean - global_weight)
    return client_mean - new_h / alpha, new_h


@dataclass(frozen=True)
class FedDynConfig:
    """FedDyn's options; the default is the authors' code's."""

    alpha: float = 0.01

    def __post_init__(self) -> None:
        if not (math.isfinite(self.alpha) and self.alpha > 0):
            raise ConfigError(
                f"feddyn.alpha must be > 0 (the server divides by it); got {self.alpha}."
            )


class FedDynClientRound(ClientRound):
    """Adds the dynamic regulariser on the local parameters; updates g_i when done."""

    def __init__(
        self,
        alpha: float,
        names: list[str],
        parameters: list[torch.Tensor],
        linear: list[torch.Tensor],
        anchors: list[torch.Tensor],
    ) -> None:
        self.alpha = alpha
        self.names, self.parameters, self.linear, self.anchors = names, parameters, linear, anchors

    def loss_terms(self, step: LocalStep) -> dict[str, torch.Tensor]:
        regularizer = dynamic_regularizer(self.parameters, self.linear, self.anchors, self.alpha)
        return {"dynamic": regularizer}

    def finish(self, model: nn.Module, prototypes: Prototypes | None) -> ClientResult:
        state = {
            LINEAR + name: linear_term_update(g, w.detach(), anchor, self.alpha)
            for name, g, w, anchor in zip(
                self.names, self.linear, self.parameters, self.anchors, strict=True
            )
        }
        return ClientResult(state=state)


class FedDyn(Algorithm):
    name = "feddyn"
    config: FedDynConfig

    def start_client(self, start: ClientStart) -> FedDynClientRound:
        names, parameters, anchors = trainable_anchors(start.model, start.message.weights)
        linear = []
        for name, parameter in zip(names, parameters, strict=True):
            stored = start.state.get(LINEAR + name)  # absent before the first round
            linear.append(
                torch.zeros_like(parameter) if stored is None else stored.to(parameter.device)
            )
        return FedDynClientRound(self.config.alpha, names, parameters, linear, anchors)

    def weight_folds(self, reference: RoundReference) -> dict[str, WeightCombiner]:
        # h is built from the plain mean over arrived clients (the paper's Algorithm 1);
        # buffers keep the run's weight rule (FedAvg's sample-weighted mean by default)
        return {**super().weight_folds(reference), UNIFORM: UniformMean()}

    def aggregate(self, state: GlobalState, updates: RoundUpdates) -> GlobalState:
        alpha = self.config.alpha
        weights = updates.weights
        uniform = updates.averages[UNIFORM]
        participation = len(updates) / max(self.context.num_clients, len(updates))
        server: StateDict = {}
        for key, current in state.weights.items():
            if not self.context.is_parameter(key, current):
                continue
            h = state.tensors.get(SERVER + key, torch.zeros_like(current))
            weights[key], server[SERVER + key] = server_update(
                current, uniform[key], h, alpha, participation
            )
        return GlobalState(state.round + 1, weights, tensors=server)
