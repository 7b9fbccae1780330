"""The hooks through which an algorithm plugs into the one local loop and the one round loop.

An algorithm is a small object with four methods. The server side turns its
:class:`GlobalState` into a :class:`ServerMessage` and folds the clients'
:class:`ClientUpdate` s back into a new state; the client side returns a
:class:`ClientRound`, whose hooks the local loop calls at every step. Client-only state
(e.g. MOON's previous model) is a dict of named tensors that stays with the client.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple, Protocol, overload

import torch
from torch import nn

from protofl.aggregation import is_parameter_entry, sample_weights, weighted_average
from protofl.errors import ConfigError
from protofl.payloads import ClientUpdate, GlobalState, Prototypes, ServerMessage, StateDict
from protofl.registry import unknown_name_message


class LocalStep(NamedTuple):
    """What a loss hook sees at one optimisation step."""

    model: nn.Module
    inputs: torch.Tensor  # [B, ...] after the train transform
    labels: torch.Tensor  # [B] int64
    features: torch.Tensor  # [B, D]
    logits: torch.Tensor  # [B, C]


@dataclass(frozen=True)
class ClientResult:
    """What a client round hands back besides the weights."""

    prototypes: Prototypes | None = None
    tensors: StateDict = field(default_factory=dict)
    state: StateDict = field(default_factory=dict)  # kept on the client for its next round


class ClientRound(Protocol):
    """Per-round client hooks, made by :meth:`Algorithm.start_client`."""

    collect_prototypes: bool  # accumulate class-mean features over the last local epoch
    ce_weight: float  # weight of cross-entropy in the local loss

    def loss_terms(self, step: LocalStep) -> dict[str, torch.Tensor]:
        """Extra loss terms, each a scalar; the loop adds them to the weighted CE."""
        ...

    def finish(self, model: nn.Module, prototypes: Prototypes | None) -> ClientResult: ...


class Algorithm(Protocol):
    """A federated algorithm: its server aggregation and its client hooks."""

    name: str

    def init_state(self, weights: StateDict) -> GlobalState: ...

    def message(self, state: GlobalState) -> ServerMessage: ...

    def start_client(
        self, message: ServerMessage, model: nn.Module, client_state: StateDict
    ) -> ClientRound: ...

    def aggregate(self, state: GlobalState, updates: Sequence[ClientUpdate]) -> GlobalState: ...


@dataclass(frozen=True)
class AlgorithmContext:
    """Facts about the run an algorithm may need when it is built."""

    num_classes: int
    feature_dim: int
    rounds: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    num_clients: int = 0  # all clients of the federation (0: unknown)
    parameter_names: frozenset[str] = frozenset()  # trainable entries of the state dict

    def is_parameter(self, key: str, value: torch.Tensor) -> bool:
        """Whether a state-dict entry is a trained parameter (not a BatchNorm statistic)."""
        return is_parameter_entry(key, value, self.parameter_names)


AlgorithmFactory = Callable[[Any, AlgorithmContext], Algorithm]


@dataclass(frozen=True)
class AlgorithmSpec:
    """A registry entry: how to build an algorithm, its options and a one-line summary."""

    name: str
    config_class: type[Any]
    factory: AlgorithmFactory
    summary: str
    defaults: Mapping[str, Any] = field(default_factory=dict)  # e.g. an ablation's switches

    def make_config(self, options: Mapping[str, Any]) -> Any:
        """Build the frozen options, refusing unknown keys with a "did you mean"."""
        known = [f.name for f in fields(self.config_class)]
        for key in options:
            if key not in known:
                raise ConfigError(unknown_name_message(f"option of {self.name}", key, known))
        return self.config_class(**{**self.defaults, **options})


def initial_state(weights: StateDict) -> GlobalState:
    return GlobalState(round=0, weights=weights)


def broadcast(state: GlobalState) -> ServerMessage:
    """The common message: current weights and prototypes for the next round."""
    return ServerMessage(round=state.round + 1, weights=state.weights, prototypes=state.prototypes)


class RoundUpdates(Sequence[ClientUpdate]):
    """A round's updates whose weights were averaged as they arrived.

    The simulator folds each client's weights into two running averages (by sample count
    and uniform) and then drops them from the update, so a round holds one model's worth of
    sums, not a model per client. Algorithms read weights through :func:`average_weights`,
    never from ``update.weights``, which may be empty here.
    """

    def __init__(
        self, updates: Sequence[ClientUpdate], by_samples: StateDict, uniform: StateDict
    ) -> None:
        self._updates = list(updates)
        self.by_samples, self.uniform = by_samples, uniform

    @overload
    def __getitem__(self, index: int) -> ClientUpdate: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[ClientUpdate]: ...

    def __getitem__(self, index: int | slice) -> ClientUpdate | Sequence[ClientUpdate]:
        return self._updates[index]

    def __len__(self) -> int:
        return len(self._updates)


def received_prototypes(message: ServerMessage, model: nn.Module) -> Prototypes | None:
    """The message's prototypes on the model's device (None when it carries none)."""
    if message.prototypes is None:
        return None
    return message.prototypes.to(next(model.parameters()).device)


def local_prototypes(updates: Sequence[ClientUpdate]) -> Prototypes | None:
    """Every client's uploaded prototypes in one set (None when nobody sent any).

    Updates reach ``aggregate`` screened: malformed prototypes were already dropped.
    """
    parts = [u.prototypes for u in updates if u.prototypes is not None and len(u.prototypes)]
    return Prototypes.concat(parts) if parts else None


def average_weights(updates: Sequence[ClientUpdate], by_samples: bool = True) -> StateDict:
    """The clients' weights averaged by local sample count (FedAvg), or uniformly."""
    if isinstance(updates, RoundUpdates):
        return dict(updates.by_samples if by_samples else updates.uniform)
    if by_samples:
        factors = sample_weights([u.num_samples for u in updates])
    else:
        factors = [1.0 / len(updates)] * len(updates)
    return weighted_average([u.weights for u in updates], factors)


class NoHooks:
    """A client round that adds nothing to cross-entropy (FedAvg's client)."""

    collect_prototypes = False
    ce_weight = 1.0

    def loss_terms(self, step: LocalStep) -> dict[str, torch.Tensor]:
        return {}

    def finish(self, model: nn.Module, prototypes: Prototypes | None) -> ClientResult:
        return ClientResult()
