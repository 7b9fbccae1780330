"""FedProto "with parameter averaging", as the FPL paper runs it (Tan et al., "FedProto:
Federated Prototype Learning across Heterogeneous Clients", AAAI 2022).

FedProto proper shares only prototypes between heterogeneous models; the FPL paper's
baseline (Table 2, "FedProto (with parameter averaging)") also averages the weights. Client:
loss = CE + lambda * MSE(z, C_y), the squared distance of each feature to its class's global
prototype averaged over feature dimensions, summed over samples whose class has one and
divided by the batch size (``nn.MSELoss`` on a target that equals the feature where there is
no prototype, as both the FedProto and the FPL reference code compute it). Local
prototypes are the per-class mean features over the last local epoch. Server: FedAvg of
the weights; per class, the global prototype is the mean of the clients' local prototypes
weighted by their sample counts (FedProto's Eq. for the global prototype, ``C_j = sum_i
|D_ij| / N_j * C_ij``). Round 1 has no global prototypes, so it is FedAvg.

Default ``proto_weight = 1`` (lambda): the FedProto authors' code (``yuetan031/FedProto``
README: ``--ld`` "weight of proto loss", default 1; 1 for MNIST and FEMNIST, 0.1 for
CIFAR-10). The FPL reference reads ``args.mu`` but its ``best_args`` does not set one.

Deliberate difference from the reference code: the FedProto and the FPL reference average
the clients' prototypes without weights; ``weight_by_samples = false`` does that (the FPL
paper's Eq. 3 global prototype).

Buffer policy: FedAvg (BatchNorm running statistics averaged, ``num_batches_tracked`` an
integer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from protofl.algorithms.base import Algorithm, RoundUpdates
from protofl.algorithms.hooks import ClientRound, ClientStart, LocalStep
from protofl.algorithms.losses import unbiased_consistency_loss
from protofl.algorithms.prototypes import class_means, global_prototypes
from protofl.core.payloads import GlobalState, Prototypes
from protofl.errors import ConfigError


@dataclass(frozen=True)
class FedProtoConfig:
    """FedProto's options; defaults from the FedProto authors' code."""

    proto_weight: float = 1.0  # lambda, the weight of the prototype distance term
    weight_by_samples: bool = True  # False: plain mean of client prototypes (the reference)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.proto_weight) and self.proto_weight >= 0):
            raise ConfigError(f"fedproto.proto_weight must be >= 0; got {self.proto_weight}.")
        if not isinstance(self.weight_by_samples, bool):
            raise ConfigError(
                f"fedproto.weight_by_samples must be true or false; got {self.weight_by_samples!r}."
            )


class FedProtoClientRound(ClientRound):
    """Pulls each feature towards its class's global prototype; collects local prototypes."""

    collect_prototypes = True

    def __init__(self, proto_weight: float, prototypes: Prototypes | None, num_classes: int):
        self.proto_weight = proto_weight
        self.targets: tuple[torch.Tensor, torch.Tensor] | None = None
        if prototypes is not None and len(prototypes):
            self.targets = class_means(prototypes, num_classes)  # on the model's device

    def loss_terms(self, step: LocalStep) -> dict[str, torch.Tensor]:
        if self.targets is None:  # round 1: no global prototypes yet
            return {"proto": step.features.new_zeros(())}
        means, has = self.targets
        distance = unbiased_consistency_loss(step.features, step.labels, means, has, "mean")
        return {"proto": self.proto_weight * distance}


class FedProto(Algorithm):
    name = "fedproto"
    config: FedProtoConfig

    def start_client(self, start: ClientStart) -> FedProtoClientRound:
        weight, classes = self.config.proto_weight, self.context.num_classes
        return FedProtoClientRound(weight, start.prototypes, classes)

    def aggregate(self, state: GlobalState, updates: RoundUpdates) -> GlobalState:
        context = self.context
        local = updates.prototypes
        weighted = self.config.weight_by_samples
        prototypes = global_prototypes(local, context.num_classes, weighted) if local else None
        return GlobalState(state.round + 1, updates.weights, prototypes=prototypes)
