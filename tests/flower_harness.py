"""What the Flower tests share: fake and in-process Grids, the tiny federation's server and
client set-ups, and comparisons of Flower's records with the simulator's. Imported by the
test modules under tests/integration/ (pytest puts tests/ on sys.path), so that no test module
imports another."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
import torch

pytest.importorskip("flwr", reason="Flower is optional: pip install protofl[flower]")

from flwr.app import Context, Message, RecordDict
from flwr.common.serde import recorddict_from_proto, recorddict_to_proto
from flwr.supercore.task_identity import TaskIdentity

from protofl import RunConfig, RunResult, train_federated
from protofl.core.records import RoundRecord
from protofl.flower.client import (
    PARTITION_ID,
    ClientSetup,
    client_app,
    client_from_arrays,
)
from protofl.flower.server import server_from_arrays
from protofl.flower.settings import FlowerSettings
from protofl.flower.strategy import ServerSetup

from tiny_data import TinyNet, tiny_clients

Node = Callable[[Message], Message | None]  # a node's answer to a message; None: no reply


@pytest.fixture(autouse=True)
def task_identity() -> Iterator[None]:
    """Flower's Message() reads the run id of the process it runs in; a test is no app."""
    saved = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 0
    yield
    TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = saved


def wire(content: RecordDict) -> RecordDict:
    return recorddict_from_proto(recorddict_to_proto(content))


class FakeGrid:
    """Delivers each message to a node function, in node order; records what was sent."""

    def __init__(self, nodes: dict[int, Node]) -> None:
        self.nodes = nodes
        self.sent: list[list[Message]] = []
        self.timeouts: list[float | None] = []

    def get_node_ids(self) -> list[int]:
        return list(self.nodes)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> list[Message]:
        batch = list(messages)
        self.sent.append(batch)
        self.timeouts.append(timeout)
        replies = []
        for message in batch:
            message.metadata.__dict__["_message_id"] = uuid.uuid4().hex
            reply = self.nodes[message.metadata.dst_node_id](message)
            if reply is not None:
                replies.append(reply)
        return replies


TINY = RunConfig(rounds=2, local_epochs=1, batch_size=16, lr=0.05, seed=3)


def tiny_server(config: RunConfig = TINY, settings: FlowerSettings | None = None) -> ServerSetup:
    _, tests = tiny_clients()
    torch.manual_seed(0)
    return server_from_arrays(tests, TinyNet(), config, num_classes=4, settings=settings)


def tiny_client(index: int, config: RunConfig = TINY) -> ClientSetup:
    clients, _ = tiny_clients()
    return client_from_arrays(clients[index], TinyNet(), config, index, num_classes=4)


def simulate(config: RunConfig) -> RunResult:
    """``config`` on the four tiny clients in the simulator, the model seeded as on Flower."""
    clients, tests = tiny_clients()
    torch.manual_seed(0)
    return train_federated(clients, tests, TinyNet(), config, num_classes=4)


def tiny_grid(config: RunConfig) -> tuple[dict[int, ClientSetup], InProcessGrid]:
    """The four tiny clients as real ClientApps on nodes whose ids are in no order."""
    setups = {index: tiny_client(index, config) for index in range(4)}
    app = client_app(lambda context: setups[int(context.node_config[PARTITION_ID])])
    return setups, InProcessGrid(app, {}, node_ids=[907, 31, 555, 2])


# the benchmark apps' smallest federation: one embedded client in each of two domains
BENCHMARK_TINY = RunConfig(
    rounds=2,
    local_epochs=1,
    batch_size=32,
    domains=("handwritten", "synthetic"),
    clients_per_domain={"handwritten": 1, "synthetic": 1},
    client_fraction=0.05,
    eval_batch_size=500,
)


def without_timing(record: RoundRecord) -> dict[str, Any]:
    values = dataclasses.asdict(record)
    del values["train_seconds"], values["eval_seconds"]
    # personalised scores need the clients' own layers, which on Flower stay on the nodes
    del values["personal_accuracy"], values["personal_mean_accuracy"]
    return values


def assert_close(got: dict[str, Any], want: dict[str, Any]) -> None:
    """Numbers equal to 1e-6 relative, everything else (ids, None, ...) exactly."""
    assert got.keys() == want.keys()
    numbers = [k for k, v in want.items() if isinstance(v, float)]
    assert {k: got[k] for k in numbers} == pytest.approx({k: want[k] for k in numbers}, rel=1e-6)
    assert {k: v for k, v in got.items() if k not in numbers} == {
        k: v for k, v in want.items() if k not in numbers
    }


def flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level of dotted keys (pytest.approx compares flat dicts)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


class InProcessGrid(FakeGrid):
    """Runs the real ClientApp for each node, with a Context (and state) per node."""

    def __init__(self, app: Any, run_config: dict[str, Any], node_ids: list[int]) -> None:
        self.contexts = {
            node: Context(
                run_id=1,
                node_id=node,
                node_config={PARTITION_ID: index},
                state=RecordDict(),
                run_config=run_config,
            )
            for index, node in enumerate(node_ids)
        }
        super().__init__({node: self._deliver(app, node) for node in node_ids})

    def _deliver(self, app: Any, node: int) -> Node:
        def answer(message: Message) -> Message:
            incoming = Message(wire(message.content), node, message.metadata.message_type)
            incoming.metadata.__dict__["_message_id"] = message.metadata.message_id
            reply = app(incoming, self.contexts[node])
            return Message(wire(reply.content), reply_to=message)

        return answer
