"""Write a Flower app folder (a ``pyproject.toml``) for ``flwr run``.

Flower runs an *app*: a folder whose ``pyproject.toml`` names the ServerApp and ClientApp in
``[tool.flwr.app.components]`` and holds the run config in ``[tool.flwr.app.config]``.
protofl's apps live in the installed package (:mod:`protofl.flower.app`), so the folder
needs nothing else; it is generated rather than shipped so that it carries the user's
resolved settings and works from an installed wheel. Every setting is written, so any of
them can be overridden later with ``flwr run <folder> --run-config "key=value"``.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from protofl.config import RunConfig
from protofl.errors import ConfigError
from protofl.flower.settings import FlowerSettings, to_run_config, toml_table

SERVER_APP = "protofl.flower.app:server"
CLIENT_APP = "protofl.flower.app:client"
# Environment for Flower processes started on a closed machine (tests, benchmarks): no
# update check, no telemetry, no dependency installation, unbuffered logs.
OFFLINE_ENV = {
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
    "PYTHONUNBUFFERED": "1",
}

_TEMPLATE = """\
# A Flower app written by `{command}`. protofl and flwr must be installed
# where the SuperLink and every SuperNode run: keep runtime dependency installation off
# (FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1); the dependency below is informative.
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "{name}"
version = "1.0.0"
description = "protofl {algorithm} on {benchmark}, on Flower"
dependencies = ["flwr[simulation]>=1.41,<1.42"]

[tool.flwr.app]
publisher = "protofl"

[tool.flwr.app.components]
serverapp = "{server}"
clientapp = "{client}"

# protofl settings, the keys of `protofl run --set`; "" means not set. flower.* are the
# server's waiting rules (see docs/flower.md).
[tool.flwr.app.config]
{config}"""


def write_app(
    folder: str | Path,
    config: RunConfig | None = None,
    settings: FlowerSettings | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``folder/pyproject.toml`` for ``config``; return the file's path.

    Relative ``out``, ``data_dir`` and ``cache_dir`` are made absolute here, since Flower
    runs the apps in other working directories.
    """
    config = _absolute_paths(config or RunConfig())
    path = Path(folder) / "pyproject.toml"
    if path.exists() and not overwrite:
        raise ConfigError(f"{str(path)!r} exists; pass overwrite=True (--overwrite) to replace it.")
    path.parent.mkdir(parents=True, exist_ok=True)
    text = _TEMPLATE.format(
        command="python -m protofl.flower app",
        name=_project_name(config),
        algorithm=config.algorithm,
        benchmark=config.benchmark,
        server=SERVER_APP,
        client=CLIENT_APP,
        config=toml_table(to_run_config(config, settings)),
    )
    path.write_text(text)
    ignore = path.parent / ".gitignore"
    if not ignore.exists():  # docs/flower.md section 3 makes certs/ and keys/ here
        ignore.write_text(GITIGNORE)
    return path


# Private keys must never be committed: `git add -A` in the app folder would take them.
# (Flower's FAB takes only .py/.toml/.md/.yaml/.json files, so they do not travel with
# `flwr run`.)
GITIGNORE = (
    "# written by protofl: private keys and certificates stay out of git\ncerts/\nkeys/\n*.key\n"
)


def _absolute_paths(config: RunConfig) -> RunConfig:
    changes: dict[str, Any] = {
        name: str(Path(value).expanduser().resolve())
        for name in ("out", "data_dir", "cache_dir")
        if (value := getattr(config, name))
    }
    return dataclasses.replace(config, **changes)


def _project_name(config: RunConfig) -> str:
    return re.sub(r"[^a-z0-9]+", "-", f"protofl-{config.algorithm}-{config.benchmark}".lower())
