"""FedDAP (Le, Nguyen, Qiao, Kim, Huh, Hong, "FedDAP: Domain-Aware Prototype Learning for
Federated Learning under Domain Shift", CVPR 2026).

Client: its local prototypes are the class means of the last local epoch's features plus
small Gaussian noise (std ``noise_std / n_c``), tagged with its domain. Server: per (class,
domain), the clients' prototypes merge with cosine-similarity attention,
``sum_i a_i p_i`` with ``a = softmax_i(sum_j cos(p_i, p_j) / merge_temperature)``; the merged
(class, domain) prototypes are broadcast. Client loss
``CE + dpa_weight * L_DPA + contrast_weight * L_CPCL``: ``L_DPA = mean (1 - cos(z, g_{y,d}))``
towards its own domain's prototype of the sample's class, and ``L_CPCL`` an InfoNCE over the
*other* domains' prototypes (positives of the sample's class). Weights: FedAvg.

Equations as implemented and every difference from the authors' code
(``quanghuy6997/FedDAP`` ``models/feddap.py``, which does not run as released) are in
:mod:`protofl.algorithms.feddap_maths` and docs/algorithms/feddap.md; the formulas follow
that code, as the paper's text was not at hand. Defaults from the authors' code:
``contrast_temperature = 0.02`` (``--infoNCET``), ``merge_temperature = 0.001`` (the call
in ``loc_update``),
``dpa_weight = contrast_weight = 1`` (``--lamda_1/2``), ``noise_std = 0.005``
(``agg_func_dp``'s ``0.05 * 0.1``). Decided here: a domain is the client's data domain,
tagged by :func:`protofl.core.payloads.domain_id`; the noise stream is derived from the run's seed,
the client and the round.

Buffer policy: FedAvg (BatchNorm statistics averaged, ``num_batches_tracked`` an integer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from protofl.algorithms.base import Algorithm, RoundUpdates
from protofl.algorithms.feddap_maths import (
    cross_domain_contrastive_loss,
    domain_alignment_loss,
    merge_domain_prototypes,
    perturb_prototypes,
)
from protofl.algorithms.hooks import ClientResult, ClientRound, ClientStart, LocalStep
from protofl.core.payloads import GlobalState, Prototypes, domain_id
from protofl.core.seeding import derive_seed, torch_generator
from protofl.errors import ConfigError


@dataclass(frozen=True)
class FedDAPConfig:
    """FedDAP's options; defaults from the authors' code (see the module docstring)."""

    dpa_weight: float = 1.0  # lambda_1, domain-consistent alignment
    contrast_weight: float = 1.0  # lambda_2, cross-domain contrast
    contrast_temperature: float = 0.02
    merge_temperature: float = 0.001
    noise_std: float = 0.005

    def __post_init__(self) -> None:
        for name in ("dpa_weight", "contrast_weight", "noise_std"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"feddap.{name} must be a finite number >= 0; got {value}.")
        for name in ("contrast_temperature", "merge_temperature"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"feddap.{name} must be > 0; got {value}.")


class FedDAPClientRound(ClientRound):
    """Aligns with its own domain's prototypes, contrasts with the other domains'."""

    collect_prototypes = True

    def __init__(
        self, config: FedDAPConfig, prototypes: Prototypes | None, domain: int, noise_seed: int
    ) -> None:
        self.config, self.domain, self.noise_seed = config, domain, noise_seed
        usable = prototypes is not None and len(prototypes) and prototypes.domains is not None
        self.prototypes = prototypes if usable else None

    def loss_terms(self, step: LocalStep) -> dict[str, torch.Tensor]:
        zero = step.features.new_zeros(())
        if self.prototypes is None or self.prototypes.domains is None:  # round 1
            return {"dpa": zero, "cross_contrast": zero}
        vectors, labels, domains = (
            self.prototypes.vectors,
            self.prototypes.labels,
            self.prototypes.domains,
        )
        config = self.config
        dpa = domain_alignment_loss(
            step.features, step.labels, self.domain, vectors, labels, domains
        )
        contrast = cross_domain_contrastive_loss(
            step.features,
            step.labels,
            self.domain,
            vectors,
            labels,
            domains,
            config.contrast_temperature,
        )
        return {
            "dpa": config.dpa_weight * dpa,
            "cross_contrast": config.contrast_weight * contrast,
        }

    def finish(self, model: nn.Module, prototypes: Prototypes | None) -> ClientResult:
        if prototypes is None or not len(prototypes):
            return ClientResult()
        generator = torch_generator(self.noise_seed, torch.device("cpu"))
        cpu = prototypes.to("cpu")
        noisy = perturb_prototypes(cpu.vectors, cpu.support, self.config.noise_std, generator)
        tags = torch.full_like(cpu.labels, self.domain)
        return ClientResult(prototypes=Prototypes(noisy, cpu.labels, cpu.support, tags))


class FedDAP(Algorithm):
    name = "feddap"
    config: FedDAPConfig

    def start_client(self, start: ClientStart) -> FedDAPClientRound:
        client = start.client
        seed = derive_seed(self.context.seed, "feddap-noise", client.client_id, start.message.round)
        return FedDAPClientRound(self.config, start.prototypes, domain_id(client.domain), seed)

    def aggregate(self, state: GlobalState, updates: RoundUpdates) -> GlobalState:
        local = updates.prototypes
        merged = None
        if local is not None and local.domains is not None:
            prototypes, domains = merge_domain_prototypes(
                local.vectors, local.labels, local.domains, self.config.merge_temperature
            )
            merged = Prototypes(prototypes.vectors, prototypes.labels, prototypes.support, domains)
        return GlobalState(state.round + 1, updates.weights, prototypes=merged)
