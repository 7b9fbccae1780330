"""A simulation that records what the server sent and received: every message, every state
the server ended a round with, every client's update. Shared by the contract tests (pytest
puts tests/ on sys.path), so that no test module imports another."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from protofl.algorithms import Algorithm, AlgorithmContext, build_algorithm
from protofl.algorithms.base import Aggregation
from protofl.core.payloads import ClientUpdate, GlobalState, ServerMessage, StateDict
from protofl.data.user import federation_from_arrays
from protofl.engine import client as simulator
from protofl.engine.local import LocalSettings
from protofl.sim import simulator as simulator_module
from protofl.sim.simulator import Simulation

from tiny_data import TinyNet, tiny_clients


class Recording:
    """Wraps an algorithm and records every message it sends and every update it receives."""

    def __init__(self, inner: Algorithm) -> None:
        self.inner, self.name = inner, inner.name
        self.states: list[GlobalState] = []
        self.messages: list[ServerMessage] = []
        self.updates: list[ClientUpdate] = []

    def init_state(self, weights: StateDict) -> GlobalState:
        return self.inner.init_state(weights)

    def message(self, state: GlobalState) -> ServerMessage:
        self.states.append(state)
        self.messages.append(self.inner.message(state))
        return self.messages[-1]

    def __getattr__(self, name: str) -> Any:  # every other hook is the inner algorithm's
        return getattr(self.inner, name)

    def start_aggregation(
        self, state: GlobalState, root: StateDict | None = None
    ) -> RecordedAggregation:
        return RecordedAggregation(self.inner.start_aggregation(state, root), self.states)


class RecordedAggregation:
    """The inner algorithm's aggregation, recording the state it ends with."""

    def __init__(self, inner: Aggregation, states: list[GlobalState]) -> None:
        self.inner, self.states = inner, states

    def add(self, update: ClientUpdate) -> None:
        self.inner.add(update)

    def result(self) -> GlobalState:
        self.states.append(self.inner.result())
        return self.states[-1]


def recorded_simulation(
    name: str, monkeypatch: pytest.MonkeyPatch, rounds: int = 2
) -> tuple[Simulation, Recording]:
    """Run ``name`` recording messages, server states and what each client sent (the round
    loop folds weights in as updates arrive, so ``aggregate`` sees them without weights)."""
    sent: list[ClientUpdate] = []

    def recording_client_round(*args, **kwargs):  # type: ignore[no-untyped-def]
        update, state = simulator.run_client_round(*args, **kwargs)
        sent.append(update)
        return update, state

    monkeypatch.setattr(simulator_module, "run_client_round", recording_client_round)
    clients, tests = tiny_clients(per_client=32)
    federation = federation_from_arrays(clients, tests)
    context = AlgorithmContext(federation.num_classes, feature_dim=8, rounds=rounds)
    recording = Recording(build_algorithm(name, {}, context))
    torch.manual_seed(0)
    settings = LocalSettings(epochs=1, batch_size=16, lr=0.05)
    simulation = Simulation.start(recording, TinyNet(), federation, settings)  # type: ignore[arg-type]
    simulation.run(rounds)
    recording.updates[:] = sent
    return simulation, recording
