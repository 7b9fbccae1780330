"""Run a protofl federation on Flower's simulation engine, in this process.

A thin wrapper over ``flwr.simulation.run_simulation`` with one virtual SuperNode per
client; the apps are the same generic ServerApp and ClientApp a real deployment runs.
"""

from __future__ import annotations

from typing import Any

from flwr.app import Context
from flwr.simulation import run_simulation
from torch import nn

from protofl.config import RunConfig
from protofl.errors import TrainingError
from protofl.flower.client import ClientSetup, client_app, client_from_config, partition_id
from protofl.flower.env import quiet_flower_env
from protofl.flower.server import FlowerResult, server_app, server_from_config
from protofl.flower.settings import FlowerSettings
from protofl.flower.strategy import ServerSetup


def default_backend(model: nn.Module, clients: int) -> dict[str, Any]:
    """One CPU per virtual client, and a 1/clients share of the GPU when the server's model is
    on one. Ray hides the GPUs from an actor given no GPU share (CUDA_VISIBLE_DEVICES=""), so
    without a share the clients would silently train on the CPU while the server used the
    GPU (or fail, with device=cuda)."""
    parameter = next(model.parameters(), None)
    on_gpu = parameter is not None and parameter.device.type == "cuda"
    share = 1.0 / max(clients, 1) if on_gpu else 0.0
    return {"client_resources": {"num_cpus": 1, "num_gpus": share}}


def simulate(
    config: RunConfig | None = None,
    settings: FlowerSettings | None = None,
    backend_config: dict[str, Any] | None = None,
    write: bool = True,
) -> FlowerResult:
    """Run ``config`` (default: FPL on the embedded benchmark) on Flower's simulation engine.

    ``backend_config`` goes to ``run_simulation`` (default: one CPU per virtual client,
    and when the server runs on a GPU an equal share of it each, see
    :func:`default_backend`). Results are written as ``protofl run`` writes them, unless
    ``write`` is false.
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
        backend_config=backend_config or default_backend(setup.model, setup.num_clients or 1),
    )
    if not produced:
        raise TrainingError("the Flower simulation ended without a result; see its log above.")
    return produced[0]
