"""The client side of an algorithm: what its hooks receive and return.

:meth:`~protofl.algorithms.base.Algorithm.start_client` gets a :class:`ClientStart` and returns
a :class:`ClientRound`, whose ``loss_terms`` the one local loop calls at every
:class:`LocalStep` and whose ``finish`` says what to send besides the weights and what the
client keeps (:class:`ClientResult`). Client-only state (e.g. MOON's previous model) is a dict
of named tensors that stays with the client.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import nn

from protofl.core.payloads import Prototypes, ServerMessage, StateDict


class LocalStep(NamedTuple):
    """What a loss hook sees at one optimisation step."""

    model: nn.Module
    inputs: torch.Tensor  # [B, ...] after the train transform
    labels: torch.Tensor  # [B] int64
    features: torch.Tensor  # [B, D]
    logits: torch.Tensor  # [B, C]
    last_epoch: bool = False  # the round's last local epoch (where prototypes are taken)


@dataclass(frozen=True)
class ClientResult:
    """What a client round hands back besides the weights."""

    prototypes: Prototypes | None = None
    state: StateDict = field(default_factory=dict)  # kept on the client for its next round


@dataclass(frozen=True)
class ClientInfo:
    """Who is training: what a client's hooks may know about their own client."""

    client_id: str
    domain: str  # the client's data domain (FedDAP keeps a prototype per class and domain)


@dataclass(frozen=True, eq=False)
class ClientStart:
    """What a client round starts from: the server's message, the client's model (already
    holding the message's weights), its private state from its last round, and who it is."""

    message: ServerMessage
    model: nn.Module
    state: StateDict
    client: ClientInfo

    @property
    def prototypes(self) -> Prototypes | None:
        """The message's prototypes on the model's device; None when it carries none or an
        empty set (the first round)."""
        sent = self.message.prototypes
        if sent is None or not len(sent):
            return None
        return sent.to(next(self.model.parameters()).device)


class ClientRound:
    """Per-round client hooks, made by :meth:`Algorithm.start_client`.

    The defaults are FedAvg's client: cross-entropy only, no extra terms, and the class
    prototypes collected over the last epoch are sent when ``collect_prototypes`` is set.
    """

    collect_prototypes: bool = False  # accumulate class-mean features over the last epoch
    ce_weight: float = 1.0  # weight of cross-entropy in the local loss

    def loss_terms(self, step: LocalStep) -> dict[str, torch.Tensor]:
        """Extra loss terms, each a scalar; the loop adds them to the weighted CE."""
        return {}

    def finish(self, model: nn.Module, prototypes: Prototypes | None) -> ClientResult:
        """What to send besides the weights, and what to keep for the next round."""
        return ClientResult(prototypes=prototypes if self.collect_prototypes else None)
