"""Run a protofl federation on Flower's simulation engine, in this process.

A thin wrapper over ``flwr.simulation.run_simulation`` with one virtual SuperNode per
client; the apps are the same generic ServerApp and ClientApp a real deployment runs.
"""

from __future__ import annotations

from typing import Any

from flwr.app import Context
from flwr.simulation import run_simulation

from protofl.config import RunConfig
from protofl.errors import TrainingError
from protofl.flower.client import ClientSetup, client_app, client_from_config, partition_id
from protofl.flower.env import quiet_flower_env
from protofl.flower.server import FlowerResult, server_app, server_from_config
from protofl.flower.settings import FlowerSettings
from protofl.flower.strategy import ServerSetup


def simulate(
    config: RunConfig | None = None,
    settings: FlowerSettings | None = None,
    backend_config: dict[str, Any] | None = None,
    write: bool = True,
) -> FlowerResult:
    """Run ``config`` (default: FPL on the embedded benchmark) on Flower's simulation engine.

    ``backend_config`` goes to ``run_simulation`` (default: one CPU per virtual client).
    Results are written as ``protofl run`` writes them, unless ``write`` is false.
    """
    quiet_flower_env()
    config = config or RunConfig()
    setup = server_from_config(config, settings)
    produced: list[FlowerResult] = []

    def load_server(context: Context) -> ServerSetup:
        return setup

    def load_client(context: Context) -> ClientSetup:
        return client_from_config(config, partition_id(context.node_config))

    server = server_app(load_server, write=write, collect=produced.append)
    run_simulation(
        server_app=server,
        client_app=client_app(load_client),
        num_supernodes=setup.num_clients or 1,
        backend_config=backend_config or {"client_resources": {"num_cpus": 1, "num_gpus": 0.0}},
    )
    if not produced:
        raise TrainingError("the Flower simulation ended without a result; see its log above.")
    return produced[0]
