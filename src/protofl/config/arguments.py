"""The settings the ``run``, ``compare`` and ``flower app`` commands share: flags, presets
and ``--set``, layered into one :class:`~protofl.config.RunConfig` (defaults < preset <
``--set`` < flags). Light to import: a typo is reported before torch or any data loads."""

from __future__ import annotations

import argparse
from typing import Any

from protofl.config import RunConfig, build_config, load_preset, merge, parse_assignments

FLAG_KEYS = {  # command-line flag -> config key (flags win over --set and presets)
    "algorithm": "algorithm",
    "benchmark": "benchmark",
    "domains": "domains",
    "data_dir": "data_dir",
    "rounds": "rounds",
    "local_epochs": "local_epochs",
    "seed": "seed",
    "out": "out",
    "model": "model",
    "device": "device",
}


SET_HELP = "any setting, e.g. --set lr=0.05 --set fpl.temperature=0.1 (repeatable)"


def add_settings(
    command: argparse.ArgumentParser, set_help: str = SET_HELP, progress: bool = True
) -> None:
    """The settings ``run``, ``compare`` and ``flower app`` share."""
    command.add_argument("--benchmark", "-b", help="benchmark name (default: embedded)")
    command.add_argument("--domains", help="comma-separated subset of the benchmark's domains")
    command.add_argument("--data-dir", help="folder with the benchmark files ($PROTOFL_DATA_DIR)")
    command.add_argument(
        "--download", action="store_true", help="fetch MNIST/USPS/SVHN or DomainNet (checksummed)"
    )
    command.add_argument("--rounds", type=int, help="communication rounds")
    command.add_argument("--local-epochs", type=int, help="local epochs per round")
    command.add_argument("--model", help="model name (default: the benchmark's)")
    command.add_argument("--device", help="cpu, cuda, cuda:N or auto")
    command.add_argument("--preset", help="a shipped preset name or a TOML file")
    command.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=set_help,
    )
    if progress:
        command.add_argument("--quiet", "-q", action="store_true", help="no progress display")
        command.add_argument("--verbose", "-v", action="store_true", help="log INFO messages")


def settings_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Only what the command line sets, layered preset < --set < explicit flags."""
    preset = load_preset(args.preset) if args.preset else {}
    flags: dict[str, Any] = {
        key: getattr(args, attr)
        for attr, key in FLAG_KEYS.items()
        if getattr(args, attr, None) is not None
    }
    if args.download:
        flags["download"] = True
    return merge(preset, parse_assignments(args.set), flags)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """defaults < preset < --set < explicit flags."""
    from protofl.algorithms import ALGORITHMS  # torch: the option classes live with it

    return build_config(settings_from_args(args), ALGORITHMS.names())
