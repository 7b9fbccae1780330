"""The defences on Flower: the same weights and prototypes as the simulator, through the
strategy's aggregation (bulyan, norm-clip, the prototype defence, FLTrust with the server's
root set given as arrays or drawn by the benchmark ServerApp)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("flwr", reason="Flower is optional: pip install protofl[flower]")

from flwr.app import Context, RecordDict

from protofl import ClientArrays
from protofl.builders import prepare
from protofl.engine.root_set import root_positions
from protofl.errors import ConfigError
from protofl.flower.client import client_app
from protofl.flower.server import benchmark_server, run_server, server_from_arrays
from protofl.flower.settings import FlowerSettings, to_run_config

from flower_harness import (
    BENCHMARK_TINY,
    TINY,
    InProcessGrid,
    simulate,
    task_identity,  # noqa: F401  (the Flower apps need it: an autouse fixture)
    tiny_grid,
    tiny_server,
)
from tiny_data import TinyNet, tiny_clients


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize(
    "defence",
    [
        {"algorithm": "fedavg", "aggregation": "norm-clip"},
        {"algorithm": "fpl", "aggregation": "bulyan"},
        {"algorithm": "fpl", "prototype_aggregation": "centre-filter", "aggregation": "median"},
        {"algorithm": "fedproto", "prototype_aggregation": "median", "aggregation": "norm-clip"},
        {"algorithm": "fpl", "aggregation": "krum"},
    ],
)
def test_a_defence_on_flower_gives_the_simulators_model(defence: dict[str, Any]) -> None:
    config = dataclasses.replace(TINY, **defence)
    simulated = simulate(config)
    _, grid = tiny_grid(config)
    flower = run_server(grid, tiny_server(config), write=False)

    state = flower.strategy.state
    for key, value in simulated.state.weights.items():
        assert torch.equal(state.weights[key], value), key  # bit-identical, as every algorithm
        assert state.weights[key].dtype == value.dtype, key
    if simulated.state.prototypes is not None:
        assert state.prototypes is not None
        assert torch.equal(state.prototypes.vectors, simulated.state.prototypes.vectors)
    # the same record of what the rule did (Krum: which client it kept, by client id)
    assert [r.server_step for r in flower.strategy.history] == [
        r.server_step for r in simulated.history
    ]


def root_arrays(clients: list[ClientArrays], size: int, seed: int) -> ClientArrays:
    """The raw samples the simulator's FLTrust server draws from ``clients``."""
    chosen = root_positions([len(c.y) for c in clients], size, seed)
    x = np.concatenate([clients[i].x[rows] for i, rows in chosen.items()])
    y = np.concatenate([clients[i].y[rows] for i, rows in chosen.items()])
    return ClientArrays(x, y)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("algorithm", ["fedavg", "fpl"])
def test_fltrust_on_flower_gives_the_simulators_model(algorithm: str) -> None:
    config = dataclasses.replace(TINY, algorithm=algorithm, aggregation="fltrust", root_size=20)
    simulated = simulate(config)
    assert sum(simulated.resolved["root_set_per_domain"].values()) == 20

    _, grid = tiny_grid(config)
    clients, tests = tiny_clients()
    torch.manual_seed(0)
    root = root_arrays(clients, config.root_size, config.seed)
    server = server_from_arrays(tests, TinyNet(), config, 4, num_clients=4, root_set=root)
    flower = run_server(grid, server, write=False)

    for key, value in simulated.state.weights.items():
        assert torch.equal(flower.strategy.state.weights[key], value), key
    mean = simulate(dataclasses.replace(config, aggregation="mean"))
    weight = "classifier.weight"  # FLTrust changed the model: the test can fail
    assert not torch.equal(mean.state.weights[weight], simulated.state.weights[weight])


def test_fltrust_without_a_root_set_on_flower_says_what_to_pass() -> None:
    config = dataclasses.replace(TINY, aggregation="fltrust")
    with pytest.raises(ConfigError, match=r"server_from_arrays\(\.\.\., root_set=ClientArrays"):
        run_server(InProcessGrid(client_app(), {}, node_ids=[1]), tiny_server(config), write=False)


@pytest.mark.usefixtures("one_thread")
def test_the_benchmark_server_draws_the_simulators_root_set() -> None:
    config = dataclasses.replace(BENCHMARK_TINY, aggregation="fltrust", root_size=24)
    simulation, resolved = prepare(config)
    expected = simulation.run(config.rounds)

    run_config = to_run_config(config, FlowerSettings(min_clients=2))
    server = benchmark_server(Context(0, 0, {}, RecordDict(), run_config))
    assert server.root_set is not None and simulation.root_set is not None
    assert torch.equal(server.root_set.source.inputs, simulation.root_set.source.inputs)
    assert server.resolved["root_set_per_domain"] == resolved["root_set_per_domain"]
    grid = InProcessGrid(client_app(), run_config, node_ids=[42, 17])
    flower = run_server(grid, server, write=False)
    for got, want in zip(flower.history, expected, strict=True):
        assert got.per_domain_accuracy == want.per_domain_accuracy
    for key, value in simulation.state.weights.items():
        assert torch.equal(flower.strategy.state.weights[key], value), key
