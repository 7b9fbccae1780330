"""FedPLVM (Wang, Bian, Zhang, Chen, Xu, "Taming Cross-Domain Representation Variance in
Federated Prototype Learning with Heterogeneous Data Domains", NeurIPS 2024).

Dual-level prototype clustering: a client runs FINCH per class over its own sample features
and uploads the cluster means (local cluster prototypes, several per class where its domain
is spread out); the server runs FINCH again per class over every client's local cluster
prototypes and broadcasts the global cluster prototypes. Client loss
``CE + lambda * (L_alpha + L_corr)``: an alpha-sparsity InfoNCE over ``cos(z, c)^alpha / tau``
to the global cluster prototypes, and a correction ``2 * mean (cos(z, p_y) - 1)^2`` towards
each class's average prototype (the plain mean of its global clusters). The maths and its
comparison with the authors' code (``TriStonesWang/FedPLVM``) are in
:mod:`protofl.algorithms.fedplvm_maths` and docs/algorithms/fedplvm.md. Server weights: FedAvg.

Defaults: ``alpha = 0.25``, ``temperature = 0.07`` (the authors' ``utils/options.py``).
``proto_weight`` (their ``lamb``) defaults to 1, not their 100: their runs use SGD momentum
0.5 with 2 local epochs, ours the FPL protocol's momentum 0.9 with 10, and at 100 the
prototype terms outweigh cross-entropy a hundredfold (``--set fedplvm.proto_weight=100``
gives theirs). Our decision: the local features are those of the round's last local epoch
(as FPL's local prototypes), not a separate pass over the data after training.

Buffer policy: FedAvg (BatchNorm statistics averaged, ``num_batches_tracked`` an integer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from protofl.algorithms.base import Algorithm, RoundUpdates
from protofl.algorithms.fedplvm_maths import (
    alpha_sparsity_contrastive_loss,
    cosine_correction_loss,
    local_cluster_prototypes,
)
from protofl.algorithms.hooks import ClientResult, ClientRound, ClientStart, LocalStep
from protofl.algorithms.prototypes import class_means, cluster_prototypes
from protofl.core.payloads import GlobalState, Prototypes
from protofl.errors import ConfigError


@dataclass(frozen=True)
class FedPLVMConfig:
    """FedPLVM's options; see the module docstring for each default's source."""

    proto_weight: float = 1.0  # lambda on L_alpha + L_corr (authors: 100, other protocol)
    alpha: float = 0.25
    temperature: float = 0.07
    negative: Literal["clamp", "signed"] = "clamp"  # cos^alpha of a negative cosine

    def __post_init__(self) -> None:
        for name in ("proto_weight", "alpha", "temperature"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"fedplvm.{name} must be a finite number >= 0; got {value}.")
        if self.alpha == 0 or self.temperature == 0:
            raise ConfigError("fedplvm.alpha and fedplvm.temperature must be > 0.")
        if self.negative not in ("clamp", "signed"):
            raise ConfigError(
                f"fedplvm.negative must be 'clamp' or 'signed'; got {self.negative!r}."
            )


class FedPLVMClientRound(ClientRound):
    """Pulls features to the global clusters; clusters its last-epoch features when done."""

    def __init__(self, config: FedPLVMConfig, clusters: Prototypes | None, num_classes: int):
        self.config, self.num_classes = config, num_classes
        self.clusters = clusters if clusters is not None and len(clusters) else None
        if self.clusters is not None:
            self.means, self.has = class_means(self.clusters, num_classes)
        self.features: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []

    def loss_terms(self, step: LocalStep) -> dict[str, torch.Tensor]:
        if step.last_epoch:
            self.features.append(step.features.detach())
            self.labels.append(step.labels)
        zero = step.features.new_zeros(())
        if self.clusters is None:  # round 1: no global clusters yet
            return {"alpha": zero, "correction": zero}
        config = self.config
        contrast = alpha_sparsity_contrastive_loss(
            step.features,
            step.labels,
            self.clusters.vectors,
            self.clusters.labels,
            config.alpha,
            config.temperature,
            config.negative,
        )
        correction = cosine_correction_loss(step.features, step.labels, self.means, self.has)
        return {
            "alpha": config.proto_weight * contrast,
            "correction": config.proto_weight * correction,
        }

    def finish(self, model: nn.Module, prototypes: Prototypes | None) -> ClientResult:
        features, labels = torch.cat(self.features), torch.cat(self.labels)
        return ClientResult(prototypes=local_cluster_prototypes(features, labels, self.num_classes))


class FedPLVM(Algorithm):
    name = "fedplvm"
    config: FedPLVMConfig

    def aggregate(self, state: GlobalState, updates: RoundUpdates) -> GlobalState:
        """The global level: FINCH per class over every client's local cluster prototypes
        (the same server step as FPL's, which clusters one mean per client and class)."""
        local = updates.prototypes
        clusters = cluster_prototypes(local) if local is not None else None
        return GlobalState(state.round + 1, updates.weights, prototypes=clusters)

    def start_client(self, start: ClientStart) -> FedPLVMClientRound:
        return FedPLVMClientRound(self.config, start.prototypes, self.context.num_classes)
