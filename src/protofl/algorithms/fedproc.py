"""FedProc, prototypical contrastive federated learning (Mu et al., "FedProc: Prototypical
Contrastive Federated Learning on Non-IID data", arXiv 2109.12273, 2021; FGCS 2023).

Client: loss = alpha_t * L_proto + (1 - alpha_t) * CE, where L_proto is the InfoNCE of a
feature against the global class prototypes (its class's prototype the positive, every
other class's a negative) over cosine similarity / temperature, summed over samples whose
class has a prototype and divided by the batch size. The ``(1 - alpha_t)`` goes to the
local loop through ``ce_weight``. Local prototypes are the per-class mean features over the
last local epoch. Server: FedAvg of the weights; per class, the global prototype is the
plain mean of the clients' local prototypes.

Schedule: ``alpha_t = 1 - (t - 1) / (T - 1)`` for round ``t`` of ``T`` (1-based), falling
linearly from 1 to 0, i.e. the FPL reference's ``alpha = 1 - epoch_index / (E - 1)`` with
its 0-based ``epoch_index`` (RethinkFL ``models/fedproc.py``, ``utils/training.py``). The
FedProc paper's text was not retrievable with our tools; the schedule and the temperature
follow the code the FPL paper's numbers came from.

Default ``temperature = 1``: the reference's ``exp(cos)`` has no temperature.

Deliberate differences from the reference code: in a round without global prototypes
(round 1) the reference's loss is ``1 * 0 + 0 * CE``, so its first round trains nothing;
here such a round trains on plain CE (it is FedAvg). With a single round the schedule's
``T - 1 = 0`` would divide by zero in the reference; alpha is then 1. The loss is
vectorised with ``logsumexp`` (the reference loops over samples with NumPy object arrays,
which fail on NumPy >= 1.24).

Buffer policy: FedAvg (BatchNorm running statistics averaged, ``num_batches_tracked`` an
integer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from protofl.algorithms.base import Algorithm, RoundUpdates
from protofl.algorithms.hooks import ClientRound, ClientStart, LocalStep
from protofl.algorithms.losses import cluster_contrastive_loss
from protofl.algorithms.prototypes import global_prototypes
from protofl.core.payloads import GlobalState, Prototypes
from protofl.errors import ConfigError


def prototype_weight(round_index: int, rounds: int) -> float:
    """FedProc's alpha for 1-based round ``round_index`` of ``rounds``: 1 - (t-1)/(T-1)."""
    if rounds <= 1:
        return 1.0
    return 1.0 - (round_index - 1) / (rounds - 1)


@dataclass(frozen=True)
class FedProcConfig:
    """FedProc's options; the default is the reference code's."""

    temperature: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ConfigError(f"fedproc.temperature must be > 0; got {self.temperature}.")


class FedProcClientRound(ClientRound):
    """Contrasts features with the global prototypes, weighted by the round's alpha."""

    collect_prototypes = True

    def __init__(self, temperature: float, prototypes: Prototypes | None, alpha: float) -> None:
        self.temperature = temperature
        self.prototypes = prototypes if prototypes is not None and len(prototypes) else None
        self.alpha = alpha if self.prototypes is not None else 0.0  # no prototypes: plain CE
        self.ce_weight = 1.0 - self.alpha

    def loss_terms(self, step: LocalStep) -> dict[str, torch.Tensor]:
        if self.prototypes is None:
            return {"contrastive": step.features.new_zeros(())}
        loss = cluster_contrastive_loss(
            step.features,
            step.labels,
            self.prototypes.vectors,
            self.prototypes.labels,
            self.temperature,
        )
        return {"contrastive": self.alpha * loss}


class FedProc(Algorithm):
    name = "fedproc"
    config: FedProcConfig

    def start_client(self, start: ClientStart) -> FedProcClientRound:
        alpha = prototype_weight(start.message.round, self.context.rounds)
        return FedProcClientRound(self.config.temperature, start.prototypes, alpha)

    def aggregate(self, state: GlobalState, updates: RoundUpdates) -> GlobalState:
        context = self.context
        local = updates.prototypes
        prototypes = None if local is None else global_prototypes(local, context.num_classes, False)
        return GlobalState(state.round + 1, updates.weights, prototypes=prototypes)
