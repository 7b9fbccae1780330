"""FedHEAL (Chen, Huang, Ye, "Fair Federated Learning under Domain Skew with Local
Consistency and Domain Diversity", CVPR 2024) as a server step that composes with any
algorithm: the inner algorithm keeps its client hooks and its prototype step, FedHEAL
replaces how the clients' weights combine.

Server (maths in :mod:`protofl.algorithms.fedheal_maths`, from the authors' code
``yuhangchen0/FedHEAL`` ``models/utils/federated_model.py``, as the paper's equations were
not at hand): each client's update ``global - local`` is masked where its sign disagrees
with that client's own past rounds (kept when more than ``threshold`` of them agree); each
client's aggregation weight grows by a moving average (``distance_momentum``) of its share
of the summed masked-update distances; the new model is ``global - sum a m u / sum a m``
per coordinate. Registered as ``fedheal`` (FedAvg clients) and ``fpl-fedheal`` (FPL
clients); both take the inner algorithm's options and FedHEAL's beside them.

Defaults: ``threshold = 0.3``, ``distance_momentum = 0.4`` (the authors' ``main.py``).
``harmonise`` and ``equalise`` (both on by default) switch either part off, to measure which
one helps (our addition); with both off the weights are FedAvg's sample-weighted mean.

State: FedHEAL must see every client's weights, so this aggregation keeps the round's updates
until it ends (memory grows with the clients of a round, unlike the running mean), and keeps
per client on the server, between rounds, its sign history (one model-sized tensor set), its
participation count, weight and increment in ``GlobalState.tensors`` (checkpointed, never
sent). Buffer policy: BatchNorm statistics are masked and reweighted like parameters (as the
authors do); ``num_batches_tracked`` is rounded to an integer.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, fields
from typing import Any

import torch

from protofl.algorithms.base import (
    WEIGHTS,
    Algorithm,
    AlgorithmContext,
    AlgorithmSpec,
    RoundUpdates,
)
from protofl.algorithms.fedheal_maths import fedheal_combine
from protofl.algorithms.hooks import ClientRound, ClientStart
from protofl.core.payloads import ClientUpdate, GlobalState, ServerMessage, StateDict
from protofl.errors import ConfigError
from protofl.federation.defences import RoundReference

PREFIX = "fedheal."  # of FedHEAL's entries in GlobalState.tensors


@dataclass(frozen=True)
class FedHEALConfig:
    """FedHEAL's own options; defaults from the authors' main.py."""

    threshold: float = 0.3  # keep a coordinate when more of the client's rounds agree
    distance_momentum: float = 0.4  # weight of this round's distance share (their --beta)
    # Ablation switches (ours): False drops that part of FedHEAL.
    harmonise: bool = True  # mask coordinates whose sign disagrees with the client's past
    equalise: bool = True  # distance-based fair weights; False: sample counts, as FedAvg

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold < 1.0:
            raise ConfigError(f"threshold must lie in [0, 1); got {self.threshold}.")
        if not (math.isfinite(self.distance_momentum) and 0 <= self.distance_momentum <= 1):
            raise ConfigError(
                f"distance_momentum must lie in [0, 1]; got {self.distance_momentum}."
            )


class FedHEAL(Algorithm):
    """``inner``'s clients and prototype step, FedHEAL's combination of the weights."""

    config: FedHEALConfig

    def __init__(self, config: FedHEALConfig, context: AlgorithmContext, inner: Algorithm):
        super().__init__(config, context)
        self.inner = inner
        self.name = f"{inner.name}-fedheal"

    def message(self, state: GlobalState) -> ServerMessage:
        return self.inner.message(state)

    def start_client(self, start: ClientStart) -> ClientRound:
        return self.inner.start_client(start)

    def start_aggregation(
        self, state: GlobalState, root: StateDict | None = None
    ) -> HealingAggregation:  # FedHEAL's own combination: no weight rule, so no root
        return HealingAggregation(self, state)


class HealingAggregation:
    """Keeps the round's updates, then combines them with FedHEAL and hands the result to
    the inner algorithm's server step in place of its averaged weights."""

    def __init__(self, owner: FedHEAL, state: GlobalState) -> None:
        self.owner, self.state = owner, state
        self.updates: list[ClientUpdate] = []
        # what the server step did, per client, for metrics.jsonl (RoundRecord.server_step)
        self.report: dict[str, dict[str, float]] = {}

    def add(self, update: ClientUpdate) -> None:
        self.updates.append(update)

    def result(self) -> GlobalState:
        owner, state, stored = self.owner, self.state, self.state.tensors
        ids = [u.client_id for u in self.updates]
        rounds_seen = [int(stored.get(_key("rounds", cid), torch.tensor(0))) for cid in ids]
        healed = fedheal_combine(
            state.weights,
            [u.weights for u in self.updates],
            [_history(stored, cid) for cid in ids],
            rounds_seen,
            _per_client(stored, "weight", ids),
            _per_client(stored, "increment", ids),
            torch.tensor([count > 0 for count in rounds_seen]),
            owner.context.parameter_names,
            owner.config.threshold if owner.config.harmonise else None,
            owner.config.distance_momentum,
            fixed_weights=None if owner.config.equalise else self._sample_counts(),
        )
        self.report = {
            cid: {
                "weight": float(healed.aggregation_weights[i]),
                "kept": float(healed.kept_share[i]),
            }
            for i, cid in enumerate(ids)
        }
        folds = owner.inner.weight_folds(RoundReference(state.weights))
        for update in self.updates:
            for name, combiner in folds.items():
                if name != WEIGHTS:  # an inner algorithm's extra folds still see every client
                    combiner.add(update.weights, update.num_samples)
        averages = {name: c.result() for name, c in folds.items() if name != WEIGHTS}
        kept = [dataclasses.replace(u, weights={}) for u in self.updates]
        inner_state = owner.inner.aggregate(
            state,
            RoundUpdates(
                kept, {**averages, WEIGHTS: healed.weights}, owner.context.defend_prototypes
            ),
        )
        tensors = {k: v for k, v in inner_state.tensors.items() if not k.startswith(PREFIX)}
        tensors.update({k: v for k, v in stored.items() if k.startswith(PREFIX)})
        for index, cid in enumerate(ids):
            tensors[_key("rounds", cid)] = torch.tensor(rounds_seen[index] + 1)
            tensors[_key("weight", cid)] = healed.client_weights[index]
            tensors[_key("increment", cid)] = healed.client_increments[index]
            for entry, value in healed.histories[index].items():
                tensors[_key("history", cid) + entry] = value
        return dataclasses.replace(inner_state, tensors=tensors)

    def _sample_counts(self) -> torch.Tensor:  # [K]
        return torch.tensor([u.num_samples for u in self.updates], dtype=torch.float64)


def _key(kind: str, client_id: str) -> str:
    return f"{PREFIX}{kind}.{client_id}" + ("." if kind == "history" else "")


def _history(stored: StateDict, client_id: str) -> StateDict:
    prefix = _key("history", client_id)
    return {k[len(prefix) :]: v for k, v in stored.items() if k.startswith(prefix)}


def _per_client(stored: StateDict, kind: str, ids: list[str]) -> torch.Tensor:  # [K]
    zero = torch.zeros((), dtype=torch.float64)
    # on the CPU: a resumed state may hold these on the model's device
    return torch.stack([stored.get(_key(kind, cid), zero).double().cpu() for cid in ids])


def with_fedheal(inner: AlgorithmSpec, name: str, summary: str) -> AlgorithmSpec:
    """A registry entry for ``inner`` with FedHEAL's server step; its options are the inner
    algorithm's and FedHEAL's side by side (``--set fpl-fedheal.temperature=0.02``,
    ``--set fpl-fedheal.threshold=0.3``)."""
    config_class = _combined_config(inner.config_class)

    def factory(config: Any, context: AlgorithmContext) -> Algorithm:
        inner_options = {f.name: getattr(config, f.name) for f in fields(inner.config_class)}
        heal = {f.name: getattr(config, f.name) for f in fields(FedHEALConfig)}
        inner_algorithm = inner.factory(inner.config_class(**inner_options), context)
        healed = FedHEAL(FedHEALConfig(**heal), context, inner_algorithm)
        healed.name = name
        return healed

    return AlgorithmSpec(
        name,
        config_class,
        factory,
        summary,
        inner.defaults,
        inner.sends_prototypes,
        applies_weight_rule=False,  # FedHEAL's combination replaces the run's weight rule
    )


def _combined_config(inner: type[Any]) -> type[Any]:
    hints = typing.get_type_hints(FedHEALConfig)
    clash = {f.name for f in fields(inner)} & set(hints)
    if clash:
        raise ConfigError(f"{inner.__name__} and FedHEAL both have options {sorted(clash)}.")

    def check(self: Any) -> None:  # both option sets' own rules
        for base in (inner, FedHEALConfig):
            rule = getattr(base, "__post_init__", None)
            if rule is not None:
                rule(self)

    extra = [
        (f.name, hints[f.name], dataclasses.field(default=f.default)) for f in fields(FedHEALConfig)
    ]
    return dataclasses.make_dataclass(
        f"{inner.__name__}WithFedHEAL",
        extra,
        bases=(inner,),
        frozen=True,
        namespace={"__post_init__": check, "__module__": __name__},
    )
