"""FPL, Federated Prototype Learning (Huang et al., "Rethinking Federated Learning with Domain
Shift: A Prototype View", CVPR 2023).

Client: loss = CE + CPCL + UPCR (Eq. 12, weights 1). CPCL (Eq. 8) pulls a feature towards
its class's *cluster prototypes* against all other clusters; UPCR (Eq. 10) pulls it towards
its class's *unbiased prototype*, the plain mean of those clusters. Local prototypes (Eq. 2)
are per-class means of the pooled features over the last local epoch, taken from the
training forward passes as the reference does. Round 1 has no prototypes yet, so it is
FedAvg.

Server: sample-weighted FedAvg of the weights; per class, FINCH (cosine) over the clients'
local prototypes, coarsest partition with >= 2 clusters, each cluster averaged
(:mod:`protofl.algorithms.prototypes`). A class held by a single client forms one cluster (the
reference crashes there).

Ablations (paper Sec. 4.2), as switches on the same algorithm: ``cpcl_weight = 0`` or
``upcr_weight = 0`` (Table 1); ``upcr_target = "global"`` makes UPCR pull towards the global
prototype G (Eq. 3, the plain mean of the clients' local prototypes of a class) instead of
the unbiased one (Table 3); ``cpcl_prototypes = "global"`` makes CPCL contrast with one
global prototype per class instead of the cluster prototypes (Fig. 5). No extra payload is
needed for G: a cluster prototype is the plain mean of its ``support`` members, so the
support-weighted mean of a class's cluster prototypes is exactly the plain mean of its
local prototypes (:func:`global_from_clusters`); the client computes it from the message.

Deviations from the reference code, on purpose: logsumexp instead of raw ``exp`` (no NaN at
small temperatures), no NumPy object arrays (the reference fails on NumPy >= 1.24), and the
terms vectorised over the batch. The numbers are the same (tested against a plain loop).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from protofl.algorithms.base import Algorithm, RoundUpdates
from protofl.algorithms.hooks import ClientRound, ClientStart, LocalStep
from protofl.algorithms.losses import cluster_contrastive_loss, unbiased_consistency_loss
from protofl.algorithms.prototypes import class_means, cluster_prototypes
from protofl.core.payloads import GlobalState, Prototypes
from protofl.errors import ConfigError


@dataclass(frozen=True)
class FPLConfig:
    """FPL's options; defaults are the paper's and the reference code's."""

    temperature: float = 0.02  # tau of CPCL; the paper picks 0.02 (Sec. 4.2, Fig. 4)
    cpcl_weight: float = 1.0
    upcr_weight: float = 1.0
    upcr_reduction: Literal["mean", "sum"] = "mean"  # over feature dims; paper Eq. 10 sums
    upcr_target: Literal["unbiased", "global"] = "unbiased"  # "global": Table 3's G
    cpcl_prototypes: Literal["clusters", "global"] = "clusters"  # "global": Fig. 5's G

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ConfigError(f"fpl.temperature must be > 0; got {self.temperature}.")
        for name in ("cpcl_weight", "upcr_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"fpl.{name} must be >= 0; got {getattr(self, name)}.")
        if self.upcr_reduction not in ("mean", "sum"):
            raise ConfigError(
                f"fpl.upcr_reduction must be 'mean' (reference code) or 'sum' (paper Eq. 10); "
                f"got {self.upcr_reduction!r}."
            )
        if self.upcr_target not in ("unbiased", "global"):
            raise ConfigError(
                f"fpl.upcr_target must be 'unbiased' (mean of cluster prototypes) or 'global' "
                f"(mean of local prototypes); got {self.upcr_target!r}."
            )
        if self.cpcl_prototypes not in ("clusters", "global"):
            raise ConfigError(
                f"fpl.cpcl_prototypes must be 'clusters' or 'global' (one per class); got "
                f"{self.cpcl_prototypes!r}."
            )


def global_from_clusters(
    clusters: Prototypes, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The global prototype G of every class (paper Eq. 3, the plain mean of the clients'
    local prototypes) from its cluster prototypes: ([C, D] means, [C] has-prototype).

    Exact because each cluster prototype is the plain mean of its ``support`` members.
    """
    return class_means(clusters, num_classes, weighted=True)


class FPLClientRound(ClientRound):
    """FPL's hooks for one client round, with the round's prototypes already on the device."""

    collect_prototypes = True

    def __init__(self, config: FPLConfig, clusters: Prototypes | None, num_classes: int) -> None:
        self.config = config
        self.clusters = clusters if clusters is not None and len(clusters) else None
        if self.clusters is not None:  # on the model's device already
            # UPCR's target per class ([C, D] + [C] mask) and CPCL's prototypes and labels
            unbiased, has = class_means(self.clusters, num_classes)
            global_means, global_has = global_from_clusters(self.clusters, num_classes)
            if config.upcr_target == "global":
                unbiased, has = global_means, global_has
            self.unbiased, self.has_prototype = unbiased, has
            self.contrast = (self.clusters.vectors, self.clusters.labels)
            if config.cpcl_prototypes == "global":
                classes = torch.nonzero(global_has).flatten()
                self.contrast = (global_means[classes], classes)

    def loss_terms(self, step: LocalStep) -> dict[str, torch.Tensor]:
        zero = step.features.new_zeros(())
        if self.clusters is None:  # round 1: FPL is FedAvg
            return {"cpcl": zero, "upcr": zero}
        cpcl = upcr = zero
        if self.config.cpcl_weight:
            cpcl = self.config.cpcl_weight * cluster_contrastive_loss(
                step.features, step.labels, *self.contrast, self.config.temperature
            )
        if self.config.upcr_weight:
            upcr = self.config.upcr_weight * unbiased_consistency_loss(
                step.features,
                step.labels,
                self.unbiased,
                self.has_prototype,
                self.config.upcr_reduction,
            )
        return {"cpcl": cpcl, "upcr": upcr}


class FPL(Algorithm):
    name = "fpl"
    config: FPLConfig

    def start_client(self, start: ClientStart) -> FPLClientRound:
        return FPLClientRound(self.config, start.prototypes, self.context.num_classes)

    def aggregate(self, state: GlobalState, updates: RoundUpdates) -> GlobalState:
        local = updates.prototypes
        clusters = cluster_prototypes(local) if local is not None else None
        return GlobalState(state.round + 1, updates.weights, prototypes=clusters)
