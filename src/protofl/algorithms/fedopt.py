"""FedOpt with a server-side Adam, FedAdam (Reddi et al., "Adaptive Federated Optimization",
ICLR 2021, Algorithm 2).

Clients: plain local SGD on cross-entropy. Server, per parameter entry, with ``x`` the
global weights and ``avg`` the clients' sample-weighted mean:
``g = x - avg`` (the pseudo-gradient, minus the paper's Delta_t),
``m <- beta1 m + (1 - beta1) g``, ``v <- beta2 v + (1 - beta2) g^2``,
``x <- x - server_lr * m / (sqrt(v) + tau)``; no bias correction, as in the paper.
``m`` and ``v`` live in ``GlobalState.tensors`` (``m.<key>``, ``v.<key>``) and are never
broadcast.

Defaults (``server_lr = 0.01``, ``beta1 = 0.9``, ``beta2 = 0.99``, ``tau = 1e-3``): the
paper fixes beta1 = 0.9 and beta2 = 0.99, and its best FedAdam setting on CIFAR-10 is
server lr 10^-2 with tau 10^-3 (client lr 10^-1.5), as replicated by Flower's baseline
(``adap/flower`` ``baselines/flwr_baselines/.../adaptive_federated_optimization/conf/
cifar10/strategy/fedadam.yaml``). The FPL paper does not give its FedOPT settings.

The client average is weighted by sample count, as protofl's FedAvg and Flower's FedAdam
(built on its FedAvg aggregation) do; Algorithm 2 writes an unweighted mean, which is the
same when clients hold equal amounts of data.

Buffer policy: normalisation layers' running statistics (state-dict entries torch names
``running_mean``, ``running_var``, ``num_batches_tracked``) are not optimised: they take
the FedAvg average (the counter stays an integer). Every other floating-point entry gets
the Adam step; an entry no client changes has a zero pseudo-gradient and stays put.

Deliberate difference from the reference code: RethinkFL's ``models/fedopt.py`` runs a
server SGD with momentum 0.9 (FedAvgM) on an unweighted mean, not FedAdam.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from protofl.algorithms.base import Algorithm, RoundUpdates
from protofl.core.payloads import GlobalState, StateDict
from protofl.errors import ConfigError


def fedadam_step(
    weight: torch.Tensor,
    pseudo_gradient: torch.Tensor,
    first_moment: torch.Tensor,
    second_moment: torch.Tensor,
    lr: float,
    beta1: float,
    beta2: float,
    tau: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One FedAdam server step (Reddi et al., Algorithm 2): (new weight, new m, new v)."""
    first = beta1 * first_moment + (1 - beta1) * pseudo_gradient
    second = beta2 * second_moment + (1 - beta2) * pseudo_gradient.pow(2)
    return weight - lr * first / (second.sqrt() + tau), first, second


@dataclass(frozen=True)
class FedOptConfig:
    """FedAdam's server options; defaults from Reddi et al. (CIFAR-10 FedAdam)."""

    server_lr: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.99
    tau: float = 1e-3  # the paper's "adaptivity", added to sqrt(v)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.server_lr) and self.server_lr > 0):
            raise ConfigError(f"fedopt.server_lr must be > 0; got {self.server_lr}.")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"fedopt.{name} must lie in [0, 1); got {getattr(self, name)}.")
        if not (math.isfinite(self.tau) and self.tau > 0):
            raise ConfigError(f"fedopt.tau must be > 0 (it keeps the step finite); got {self.tau}.")


class FedOpt(Algorithm):
    name = "fedopt"
    config: FedOptConfig

    def aggregate(self, state: GlobalState, updates: RoundUpdates) -> GlobalState:
        config = self.config
        weights = updates.weights  # buffers keep this FedAvg average; moments stay here
        moments: StateDict = {}
        for key, current in state.weights.items():
            if not self.context.is_parameter(key, current):
                continue
            zeros = torch.zeros_like(current)
            weights[key], moments[f"m.{key}"], moments[f"v.{key}"] = fedadam_step(
                current,
                current - weights[key],
                state.tensors.get(f"m.{key}", zeros),
                state.tensors.get(f"v.{key}", zeros),
                config.server_lr,
                config.beta1,
                config.beta2,
                config.tau,
            )
        return GlobalState(state.round + 1, weights, tensors=moments)
