"""protofl on Flower: the only place that imports ``flwr`` (``pip install protofl[flower]``).

One generic ServerApp (:func:`server_app`, driving :class:`ProtoflStrategy`) and one generic
ClientApp (:func:`client_app`) run any registered algorithm through the same hooks, payloads,
seeds and result files as ``protofl run``; only the transport differs. See ``docs/flower.md``.

Importing this package sets ``FLWR_DISABLE_UPDATE_CHECK=1``, ``FLWR_TELEMETRY_ENABLED=0`` and
``FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1`` where they are unset
(:mod:`protofl.flower.env`). Its names load lazily, so ``protofl.flower.cli`` (which the main
CLI imports) and ``protofl.flower.settings`` work without importing flwr.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from protofl.flower.env import FLOWER_ENV, quiet_flower_env

quiet_flower_env()

if TYPE_CHECKING:
    from protofl.flower.client import (
        ClientSetup,
        benchmark_client,
        client_app,
        client_from_arrays,
        client_from_config,
    )
    from protofl.flower.project import write_app
    from protofl.flower.server import (
        FlowerResult,
        benchmark_server,
        run_server,
        server_app,
        server_from_arrays,
        server_from_config,
    )
    from protofl.flower.settings import FlowerSettings, settings_from_run_config, to_run_config
    from protofl.flower.simulation import simulate
    from protofl.flower.strategy import ProtoflStrategy, ServerSetup

_EXPORTS = {
    "ClientSetup": "client",
    "benchmark_client": "client",
    "client_app": "client",
    "client_from_arrays": "client",
    "client_from_config": "client",
    "write_app": "project",
    "FlowerResult": "server",
    "benchmark_server": "server",
    "run_server": "server",
    "server_app": "server",
    "server_from_arrays": "server",
    "server_from_config": "server",
    "FlowerSettings": "settings",
    "settings_from_run_config": "settings",
    "to_run_config": "settings",
    "simulate": "simulation",
    "ProtoflStrategy": "strategy",
    "ServerSetup": "strategy",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)


__all__ = [
    "FLOWER_ENV",
    "ClientSetup",
    "FlowerResult",
    "FlowerSettings",
    "ProtoflStrategy",
    "ServerSetup",
    "benchmark_client",
    "benchmark_server",
    "client_app",
    "client_from_arrays",
    "client_from_config",
    "quiet_flower_env",
    "run_server",
    "server_app",
    "server_from_arrays",
    "server_from_config",
    "settings_from_run_config",
    "simulate",
    "to_run_config",
    "write_app",
]
