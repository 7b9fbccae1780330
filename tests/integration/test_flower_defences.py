"""The defences on Flower: the same weights and prototypes as the simulator, through the
strategy's aggregation (bulyan, norm-clip, the prototype defence); fltrust is refused there
(tests/unit/test_fltrust.py)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch

pytest.importorskip("flwr", reason="Flower is optional: pip install protofl[flower]")

from test_flower_strategy import (
    TINY,
    InProcessGrid,
    task_identity,  # noqa: F401  (the Flower apps need it: an autouse fixture)
    tiny_client,
    tiny_server,
)

from protofl import train_federated
from protofl.flower.client import PARTITION_ID, client_app
from protofl.flower.server import run_server

from tiny_data import TinyNet, tiny_clients


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize(
    "defence",
    [
        {"algorithm": "fedavg", "aggregation": "norm-clip"},
        {"algorithm": "fpl", "aggregation": "bulyan"},
        {"algorithm": "fpl", "prototype_aggregation": "centre-filter", "aggregation": "median"},
        {"algorithm": "fedproto", "prototype_aggregation": "median", "aggregation": "norm-clip"},
    ],
)
def test_a_defence_on_flower_gives_the_simulators_model(defence: dict[str, Any]) -> None:
    config = dataclasses.replace(TINY, **defence)
    clients, tests = tiny_clients()
    torch.manual_seed(0)
    simulated = train_federated(clients, tests, TinyNet(), config, num_classes=4)

    setups = {index: tiny_client(index, config) for index in range(len(clients))}
    app = client_app(lambda context: setups[int(context.node_config[PARTITION_ID])])
    grid = InProcessGrid(app, {}, node_ids=[907, 31, 555, 2])
    flower = run_server(grid, tiny_server(config), write=False)

    state = flower.strategy.state
    for key, value in simulated.state.weights.items():
        assert torch.equal(state.weights[key], value), key  # bit-identical, as every algorithm
        assert state.weights[key].dtype == value.dtype, key
    if simulated.state.prototypes is not None:
        assert state.prototypes is not None
        assert torch.equal(state.prototypes.vectors, simulated.state.prototypes.vectors)
