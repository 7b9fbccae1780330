"""Flower run config <-> :class:`~protofl.RunConfig` plus the adapter's own settings.

Flower hands a run's settings to both apps as one flat mapping of scalars (the app's
``[tool.flwr.app.config]`` table, overridable with ``flwr run --run-config "k=v"``); nested
TOML tables arrive with dotted keys. protofl uses the same keys as ``protofl run --set``:
``rounds``, ``lr``, ``domains`` (comma-separated), ``clients_per_domain.<domain>``,
``<algorithm>.<option>`` (``fpl.temperature``), and ``flower.<setting>`` for
:class:`FlowerSettings`. TOML has no null, so an empty string means "not set" (``None``)
for the fields that allow it (``data_dir``, ``out``, ``client_fraction`` ...).
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from protofl.algorithms import ALGORITHMS
from protofl.config import RunConfig, build_config
from protofl.core.registry import unknown_name_message
from protofl.errors import ConfigError

FLOWER_SECTION = "flower"
Scalar = bool | int | float | str


@dataclass(frozen=True)
class FlowerSettings:
    """How the server waits for nodes and replies; keys ``flower.<name>`` in the run config."""

    min_clients: int = 1  # fewest valid updates a round needs; fewer stops the run
    num_nodes: int = 0  # SuperNodes to wait for before round 1; 0: one per federation client
    node_timeout: float = 120.0  # seconds to wait for them (then go on with >= min_clients)
    round_timeout: float = 600.0  # seconds to wait for a round's replies (then drop the rest)
    resume: bool = False  # continue the run in ``out`` from its last checkpoint

    def __post_init__(self) -> None:
        if self.min_clients < 1 or self.num_nodes < 0:
            raise ConfigError(
                f"flower.min_clients must be >= 1 and flower.num_nodes >= 0; got "
                f"{self.min_clients} and {self.num_nodes}."
            )
        for name in ("node_timeout", "round_timeout"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ConfigError(
                    f"flower.{name} must be a positive number of seconds; got {value}."
                )


def settings_from_run_config(run_config: Mapping[str, Any]) -> tuple[RunConfig, FlowerSettings]:
    """Build and validate the run's :class:`RunConfig` and :class:`FlowerSettings`."""
    nested: dict[str, Any] = {}
    flower: dict[str, Any] = {}
    for key, value in run_config.items():
        section, dot, leaf = key.partition(".")
        if section == FLOWER_SECTION and dot:
            flower[leaf] = value
            continue
        target = nested
        *parents, last = key.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
        target[last] = _none_if_unset(key, value)
    config = build_config(nested, ALGORITHMS.names())
    options = {
        name: _without_defaults(name, values) for name, values in config.algorithm_options.items()
    }
    config = dataclasses.replace(config, algorithm_options={k: v for k, v in options.items() if v})
    return config, parse_flower_settings(flower)


def to_run_config(config: RunConfig, flower: FlowerSettings | None = None) -> dict[str, Scalar]:
    """The flat run config that :func:`settings_from_run_config` reads back into ``config``.

    Every field is written (so that ``flwr run --run-config`` can override any of them), and
    every registered algorithm's options with their values in ``config`` or their defaults.
    """
    flat: dict[str, Scalar] = {}
    for field in dataclasses.fields(RunConfig):
        value = getattr(config, field.name)
        if field.name == "algorithm_options":
            continue
        if field.name == "clients_per_domain":
            flat.update({f"clients_per_domain.{d}": n for d, n in value.items()})
        elif value is None:
            flat[field.name] = ""
        elif isinstance(value, tuple):
            flat[field.name] = ",".join(value)
        else:
            flat[field.name] = value
    for name in ALGORITHMS.names():
        chosen = config.algorithm_options.get(name, {})
        options = dataclasses.asdict(ALGORITHMS.get(name).make_config(chosen))
        flat.update({f"{name}.{key}": value for key, value in options.items()})
    for field in dataclasses.fields(FlowerSettings):
        flat[f"{FLOWER_SECTION}.{field.name}"] = getattr(flower or FlowerSettings(), field.name)
    return flat


def toml_table(flat: Mapping[str, Scalar]) -> str:
    """``key = value`` lines for a TOML table; dotted keys are quoted so they stay flat."""
    lines = []
    for key, value in flat.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (int, float)):
            text = repr(value)
        else:
            text = json.dumps(value)  # a TOML basic string
        lines.append(f"{_toml_key(key)} = {text}")
    return "\n".join(lines) + "\n"


def _toml_key(key: str) -> str:
    # Dotted TOML keys make nested tables, which Flower flattens back to the same dotted key.
    return ".".join(
        part if part.replace("_", "").isalnum() else json.dumps(part) for part in key.split(".")
    )


def _none_if_unset(key: str, value: Any) -> Any:
    hints = typing.get_type_hints(RunConfig)
    hint = hints.get(key)
    allows_none = isinstance(hint, types.UnionType) and type(None) in typing.get_args(hint)
    return None if allows_none and value == "" else value


def _without_defaults(name: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """An algorithm's options (checked) minus those equal to its defaults, as ``protofl run``
    would have them."""
    spec = ALGORITHMS.get(name)
    spec.make_config(values)  # unknown or invalid options fail here, with a "did you mean"
    defaults = dataclasses.asdict(spec.make_config({}))
    return {key: value for key, value in values.items() if defaults.get(key, object()) != value}


def parse_flower_settings(values: Mapping[str, Any]) -> FlowerSettings:
    known = {field.name: field for field in dataclasses.fields(FlowerSettings)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(unknown_name_message("flower setting", key, list(known)))
        if known[key].type in (bool, "bool"):
            if not isinstance(value, bool):
                raise ConfigError(f"flower.{key}: expected true or false; got {value!r}.")
            kwargs[key] = value
            continue
        kind = int if known[key].type in (int, "int") else float
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok or (kind is int and not isinstance(value, int)):
            raise ConfigError(
                f"flower.{key}: expected {kind.__name__}; got {value!r} ({type(value).__name__})."
            )
        kwargs[key] = kind(value)
    return FlowerSettings(**kwargs)


def refuse_simulator_only(config: RunConfig) -> None:
    """Refuse the settings that only the simulator carries out (an attack in the
    run config), saying why, instead of ignoring them on Flower."""
    if config.attack:
        raise ConfigError(
            "attack is supported by the simulator (protofl run, compare); on Flower the server "
            "is not told: put it in the malicious node's node config instead (attack=..., "
            "attack-strength=...). See docs/attacks.md."
        )
