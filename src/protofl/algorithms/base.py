"""The hooks through which an algorithm plugs into the one local loop and the one round loop.

An algorithm declares only what differs from the defaults here. The server side turns its
:class:`GlobalState` into a :class:`ServerMessage` (default: weights and prototypes), receives
the clients' :class:`ClientUpdate` s one at a time through an :class:`Aggregation` and turns
them into the next state; the client side returns a :class:`ClientRound`, whose hooks the
local loop calls at every step (default: cross-entropy only, no prototypes, nothing kept).
Client-only state (e.g. MOON's previous model) is a dict of named tensors that stays with
the client.

The default aggregation folds each update's weights into the run's weight rule as it
arrives (a running mean: one model's worth of memory however many clients) and hands
:meth:`Algorithm.aggregate` the folded weights with the updates' remaining fields. An
algorithm that needs every client's weights (FedHEAL) overrides
:meth:`Algorithm.start_aggregation` and keeps what it needs.
"""

from __future__ import annotations

import dataclasses
import logging
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Protocol, overload

import torch
from torch import nn

from protofl.algorithms.hooks import ClientRound, ClientStart
from protofl.algorithms.robust_prototypes import defend_prototypes
from protofl.core.payloads import ClientUpdate, GlobalState, Prototypes, ServerMessage, StateDict
from protofl.core.registry import unknown_name_message
from protofl.core.validation import coerce
from protofl.errors import ConfigError
from protofl.federation.aggregation import ReportsShares, WeightCombiner, is_parameter_entry
from protofl.federation.defences import RoundReference
from protofl.federation.rules import make_combiner

logger = logging.getLogger(__name__)

WEIGHTS = "weights"  # the fold every algorithm has: the run's weight rule


@dataclass(frozen=True)
class AlgorithmContext:
    """Facts about the run an algorithm may need when it is built."""

    num_classes: int
    feature_dim: int
    rounds: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    num_clients: int = 0  # all clients of the federation (0: unknown)
    parameter_names: frozenset[str] = frozenset()  # trainable entries of the state dict
    weight_rule: str = "mean"  # how client weights combine (RunConfig.aggregation)
    trim_fraction: float = 0.1  # per end, for trimmed-mean
    assumed_malicious: float = 0.2  # for krum, multi-krum and bulyan
    clip_norm: float = 0.0  # norm-clip's bound; 0: the median of the round's update norms
    # the defence applied to uploaded prototypes (robust_prototypes.PROTOTYPE_RULES)
    prototype_aggregation: str = "all"
    prototype_min_cosine: float = 0.0  # centre-filter's least cosine to the class centre
    seed: int = 0  # the run's seed, for an algorithm's own random streams (derive_seed)

    def is_parameter(self, key: str, value: torch.Tensor) -> bool:
        """Whether a state-dict entry is a trained parameter (not a BatchNorm statistic)."""
        return is_parameter_entry(key, value, self.parameter_names)

    def defend_prototypes(self, prototypes: Prototypes) -> Prototypes:
        """The clients' uploaded prototypes after the run's prototype defence."""
        defended = defend_prototypes(
            prototypes, self.prototype_aggregation, self.num_classes, self.prototype_min_cosine
        )
        if self.prototype_aggregation == "centre-filter" and len(defended) < len(prototypes):
            dropped = len(prototypes) - len(defended)
            logger.info("centre-filter dropped %d of %d prototypes", dropped, len(prototypes))
        return defended

    def combiner(self, reference: RoundReference | None = None) -> WeightCombiner:
        """A fresh combiner for the run's weight rule; ``reference`` holds the round's
        starting weights, which the rules on updates (norm-clip) measure from."""
        return make_combiner(
            self.weight_rule,
            self.trim_fraction,
            self.assumed_malicious,
            self.clip_norm,
            reference,
        )


class RoundUpdates(Sequence[ClientUpdate]):
    """A round's screened updates (without their weights) and the weights folded from them.

    ``averages`` holds one combined state per fold the algorithm asked for
    (:meth:`Algorithm.weight_folds`); ``weights`` is the run's weight rule's result.
    """

    def __init__(
        self,
        updates: Sequence[ClientUpdate],
        averages: Mapping[str, StateDict],
        defend: Callable[[Prototypes], Prototypes] | None = None,
    ) -> None:
        self._updates = list(updates)
        self.averages = dict(averages)
        self._defend = defend  # the run's prototype defence (AlgorithmContext)

    @property
    def weights(self) -> StateDict:
        return dict(self.averages[WEIGHTS])

    @property
    def prototypes(self) -> Prototypes | None:
        """Every client's uploaded prototypes in one set, after the run's prototype defence
        (None when nobody sent any). Every prototype algorithm's server step reads them here,
        so the defence reaches all of them.

        Updates reach ``aggregate`` screened: malformed prototypes were already dropped.
        """
        parts = [u.prototypes for u in self if u.prototypes is not None and len(u.prototypes)]
        if not parts:
            return None
        joined = Prototypes.concat(parts)
        return joined if self._defend is None else self._defend(joined)

    @overload
    def __getitem__(self, index: int) -> ClientUpdate: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[ClientUpdate]: ...

    def __getitem__(self, index: int | slice) -> ClientUpdate | Sequence[ClientUpdate]:
        return self._updates[index]

    def __len__(self) -> int:
        return len(self._updates)


class Aggregation(Protocol):
    """One round's server side: updates arrive one at a time, then the new state."""

    def add(self, update: ClientUpdate) -> None: ...

    def result(self) -> GlobalState: ...


class FoldingAggregation:
    """Folds each update's weights into every combiner as it arrives and drops them, so a
    round with a running mean holds one model's worth of sums, not a model per client."""

    def __init__(
        self,
        state: GlobalState,
        folds: Mapping[str, WeightCombiner],
        finish: Callable[[GlobalState, RoundUpdates], GlobalState],
        defend: Callable[[Prototypes], Prototypes] | None = None,
    ) -> None:
        self.state, self.folds, self.finish = state, dict(folds), finish
        self.defend = defend
        self.kept: list[ClientUpdate] = []
        self.report: dict[str, dict[str, float]] = {}  # see _weight_shares

    def add(self, update: ClientUpdate) -> None:
        for combiner in self.folds.values():
            combiner.add(update.weights, update.num_samples)
        self.kept.append(dataclasses.replace(update, weights={}))

    def result(self) -> GlobalState:
        averages = {name: combiner.result() for name, combiner in self.folds.items()}
        self.report = self._weight_shares()
        return self.finish(self.state, RoundUpdates(self.kept, averages, self.defend))

    def _weight_shares(self) -> dict[str, dict[str, float]]:
        """Each client's share of the combined weights, where the run's weight rule is a
        weighted mean that says so (Krum, Multi-Krum, geometric median), for the round's
        record (RoundRecord.server_step): which clients a defence kept, and so which domains."""
        combiner = self.folds.get(WEIGHTS)
        if not isinstance(combiner, ReportsShares):
            return {}
        shares = combiner.shares()
        return {u.client_id: {"weight": share} for u, share in zip(self.kept, shares, strict=True)}


class Algorithm:
    """A federated algorithm. Subclasses set ``name`` and override only what differs:
    the client hooks (:meth:`start_client`), the server step (:meth:`aggregate`), extra
    weight folds (:meth:`weight_folds`) or the whole aggregation (:meth:`start_aggregation`).

    The defaults are FedAvg: broadcast the weights (and any prototypes), train with
    cross-entropy, combine the weights by the run's rule (sample-weighted mean by default).
    """

    name = ""

    def __init__(self, config: Any, context: AlgorithmContext) -> None:
        self.config = config
        self.context = context

    def init_state(self, weights: StateDict) -> GlobalState:
        return GlobalState(round=0, weights=weights)

    def message(self, state: GlobalState) -> ServerMessage:
        """Weights and prototypes for the next round; ``state.tensors`` stay on the server."""
        return ServerMessage(
            round=state.round + 1, weights=state.weights, prototypes=state.prototypes
        )

    def start_client(self, start: ClientStart) -> ClientRound:
        return ClientRound()

    def weight_folds(self, reference: RoundReference) -> dict[str, WeightCombiner]:
        """The running combinations of the clients' weights :meth:`aggregate` reads;
        ``reference`` holds the weights the round started from."""
        return {WEIGHTS: self.context.combiner(reference)}

    def start_aggregation(self, state: GlobalState, root: StateDict | None = None) -> Aggregation:
        """One round's aggregation from ``state``; ``root`` is the server's own model trained
        on its root set this round, for FLTrust (None otherwise)."""
        reference = RoundReference(state.weights, root)
        folds = self.weight_folds(reference)
        return FoldingAggregation(state, folds, self.aggregate, self.context.defend_prototypes)

    def aggregate(self, state: GlobalState, updates: RoundUpdates) -> GlobalState:
        return GlobalState(state.round + 1, updates.weights)

    def personal_weights(self, weights: StateDict, client_state: StateDict) -> StateDict | None:
        """The weights a client would use given the global ones, for algorithms that keep
        local layers (FedBN); None: every client uses the global model."""
        return None


def aggregate_all(
    algorithm: Algorithm, state: GlobalState, updates: Iterable[ClientUpdate]
) -> GlobalState:
    """Run one round's aggregation over ``updates`` in order (the round loops feed it one
    update at a time as each arrives; tests and the Flower server have them all at once)."""
    aggregation = algorithm.start_aggregation(state)
    for update in updates:
        aggregation.add(update)
    return aggregation.result()


AlgorithmFactory = Callable[[Any, AlgorithmContext], Algorithm]


@dataclass(frozen=True)
class AlgorithmSpec:
    """A registry entry: how to build an algorithm, its options and a one-line summary."""

    name: str
    config_class: type[Any]
    factory: AlgorithmFactory
    summary: str
    defaults: Mapping[str, Any] = field(default_factory=dict)  # e.g. an ablation's switches
    # whether its clients upload prototypes (what prototype_aggregation defends; a contract
    # test holds it equal to what a run sends)
    sends_prototypes: bool = False
    # False where the algorithm combines the clients' weights by its own rule (FedHEAL), so
    # RunConfig.aggregation would not apply and is refused
    applies_weight_rule: bool = True

    def make_config(self, options: Mapping[str, Any]) -> Any:
        """Build the frozen options, refusing unknown keys with a "did you mean"."""
        known = [f.name for f in fields(self.config_class)]
        hints = typing.get_type_hints(self.config_class)
        checked = {}
        for key, value in options.items():
            if key not in known:
                raise ConfigError(unknown_name_message(f"option of {self.name}", key, known))
            # a Literal's allowed values are explained by the option class's own check
            literal = typing.get_origin(hints[key]) is typing.Literal
            checked[key] = value if literal else coerce(f"{self.name}.{key}", hints[key], value)
        return self.config_class(**{**self.defaults, **checked})


def trainable_anchors(
    model: nn.Module, weights: StateDict
) -> tuple[list[str], list[torch.Tensor], list[torch.Tensor]]:
    """The model's trainable parameters' names and tensors and, in the same order, their
    values in ``weights`` (detached), e.g. the round's global weights for a proximal or
    dynamic regulariser."""
    names: list[str] = []
    parameters: list[torch.Tensor] = []
    anchors: list[torch.Tensor] = []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            names.append(name)
            parameters.append(parameter)
            anchors.append(weights[name].detach().to(parameter.device))
    return names, parameters, anchors
