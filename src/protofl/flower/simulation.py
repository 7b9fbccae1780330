"""Run a protofl federation on Flower's simulation engine, in this process.

A thin wrapper over ``flwr.simulation.run_simulation`` with one virtual SuperNode per
client; the apps are the same generic ServerApp and ClientApp a real deployment runs.

A config with an attack runs too, as the simulator runs it: the liars are the simulator's
draw, each liar's virtual node is armed exactly as a malicious node's node config arms it
(:mod:`protofl.flower.malicious`), and the ServerApp gets the config without the attack
(the server is not told).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from flwr.app import Context
from flwr.simulation import run_simulation
from torch import nn

from protofl.config import RunConfig
from protofl.config.robustness import BACKDOOR_FRACTION, BACKDOOR_TARGET
from protofl.engine.attacks import draw_malicious
from protofl.engine.loading import client_ids
from protofl.errors import TrainingError
from protofl.flower.client import (
    ClientLoader,
    ClientSetup,
    client_app,
    client_from_config,
    partition_id,
)
from protofl.flower.env import quiet_flower_env
from protofl.flower.malicious import NODE_KEYS, armed
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


def honest(config: RunConfig) -> RunConfig:
    """``config`` without its attack: what the ServerApp and the honest nodes are told."""
    return dataclasses.replace(
        config, attack="", malicious_fraction=0.0, malicious_clients=(), attack_strength=None,
        backdoor_target=BACKDOOR_TARGET, backdoor_fraction=BACKDOOR_FRACTION,
        attack_perturbation="std",
    )  # fmt: skip


def simulated_liars(config: RunConfig) -> frozenset[str]:
    """The client ids that lie in ``config``: the simulator's draw (none without an attack)."""
    if not config.attack:
        return frozenset()
    ids, named = client_ids(config), config.malicious_clients
    return draw_malicious(ids, config.malicious_fraction, named, config.seed)


def simulated_clients(config: RunConfig) -> ClientLoader:
    """Each virtual node's client (its ``partition-id``), the simulator's liars armed as
    their node config would arm them."""
    liars = simulated_liars(config)
    lie = {
        key: getattr(config, field)
        for key, field in NODE_KEYS.items()
        if getattr(config, field) is not None
    }

    def load_client(context: Context) -> ClientSetup:
        setup = client_from_config(honest(config), partition_id(context.node_config))
        return armed(setup, lie) if setup.data.client_id in liars else setup

    return load_client


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
    setup = server_from_config(honest(config), settings)
    if config.attack:  # recorded in config.json for the reader; the strategy never reads it
        liars = sorted(simulated_liars(config))
        setup.resolved["simulated_attack"] = {"attack": config.attack, "malicious_clients": liars}
    produced: list[FlowerResult] = []

    def load_server(context: Context) -> ServerSetup:
        return setup

    server = server_app(load_server, write=write, collect=produced.append)
    run_simulation(
        server_app=server,
        client_app=client_app(simulated_clients(config)),
        num_supernodes=setup.num_clients or 1,
        backend_config=backend_config or default_backend(setup.model, setup.num_clients or 1),
    )
    if not produced:
        raise TrainingError("the Flower simulation ended without a result; see its log above.")
    return produced[0]
