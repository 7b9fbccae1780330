"""The environment protofl sets wherever it starts Flower: no phone-home, no installs.

By default every Flower process checks for updates and sends telemetry to flower.ai, and a
SuperLink installs each run's ``[project].dependencies`` from PyPI into a new environment.
protofl apps need none of that (protofl and flwr are already installed), and an offline
machine would stall or fail on it. Importing :mod:`protofl.flower` sets these variables
unless they are already set, so a user can still opt in explicitly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping

FLOWER_ENV: Mapping[str, str] = {
    "FLWR_DISABLE_UPDATE_CHECK": "1",  # no update check against api.flower.ai
    "FLWR_TELEMETRY_ENABLED": "0",  # no telemetry events to telemetry.flower.ai
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",  # no `uv sync` per run
}


def quiet_flower_env(environ: MutableMapping[str, str] | None = None) -> MutableMapping[str, str]:
    """Set :data:`FLOWER_ENV` in ``environ`` (default ``os.environ``) where not yet set."""
    target = os.environ if environ is None else environ
    for key, value in FLOWER_ENV.items():
        target.setdefault(key, value)
    return target
