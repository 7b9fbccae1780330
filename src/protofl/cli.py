"""The ``protofl`` command: parses arguments, builds a config, calls the library, draws."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from protofl import __version__
from protofl.algorithms import ALGORITHMS
from protofl.api import RunResult, execute, prepare, resume
from protofl.config import RunConfig, build_config, load_preset, merge, parse_assignments
from protofl.errors import ProtoflError
from protofl.reporting import ProgressObserver, print_config, print_listing, print_results

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="protofl", description="Federated prototype learning (FPL) across data domains."
    )
    parser.add_argument("--version", action="version", version=f"protofl {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="train a federation and report per-domain accuracy")
    run.add_argument("--algorithm", "-a", help="algorithm name (default: fpl)")
    run.add_argument("--benchmark", "-b", help="benchmark name (default: embedded)")
    run.add_argument("--domains", help="comma-separated subset of the benchmark's domains")
    run.add_argument("--data-dir", help="folder with the benchmark files ($PROTOFL_DATA_DIR)")
    run.add_argument("--download", action="store_true", help="fetch MNIST/USPS/SVHN if missing")
    run.add_argument("--rounds", type=int, help="communication rounds")
    run.add_argument("--local-epochs", type=int, help="local epochs per round")
    run.add_argument("--seed", type=int, help="the one seed everything derives from")
    run.add_argument("--out", help="output directory (default: runs/<algo>-<bench>-<time>)")
    run.add_argument("--model", help="model name (default: the benchmark's)")
    run.add_argument("--device", help="cpu, cuda, cuda:N or auto")
    run.add_argument("--preset", help="a shipped preset name or a TOML file")
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any setting, e.g. --set lr=0.05 --set fpl.temperature=0.1 (repeatable)",
    )
    run.add_argument("--overwrite", action="store_true", help="replace results in --out")
    run.add_argument(
        "--resume", metavar="DIR", help="continue the run saved in DIR from its last checkpoint"
    )
    run.add_argument("--quiet", "-q", action="store_true", help="no progress display")
    run.add_argument("--verbose", "-v", action="store_true", help="log INFO messages")
    commands.add_parser("list", help="show algorithms, benchmarks, models and presets")
    return parser


def settings_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Only what the command line sets, layered preset < --set < explicit flags."""
    preset = load_preset(args.preset) if args.preset else {}
    flags: dict[str, Any] = {
        key: getattr(args, attr)
        for attr, key in FLAG_KEYS.items()
        if getattr(args, attr) is not None
    }
    if args.download:
        flags["download"] = True
    return merge(preset, parse_assignments(args.set), flags)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """defaults < preset < --set < explicit flags."""
    return build_config(settings_from_args(args), ALGORITHMS.names())


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(stderr=True)
    if args.command == "list":
        print_listing(Console())
        return 0
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.resume:
            result = _resume(args, console)
        else:
            config = config_from_args(args)
            print_config(console, config)
            simulation, resolved = prepare(config)
            observer = _observer(args, console, len(simulation.federation.clients))
            with observer or contextlib.nullcontext():
                result = execute(simulation, config, resolved, observer, overwrite=args.overwrite)
    except ProtoflError as err:
        console.print(f"[bold red]error:[/] {err}", highlight=False)
        return 2
    except KeyboardInterrupt:
        console.print(
            "[yellow]interrupted[/]: the rounds finished so far are saved; continue with "
            "protofl run --resume <out dir>."
        )
        return 130
    print_results(Console(), result)
    return 0


def _observer(args: argparse.Namespace, console: Console, clients: int) -> ProgressObserver | None:
    return None if args.quiet else ProgressObserver(console, clients)


def _resume(args: argparse.Namespace, console: Console) -> RunResult:
    changes = settings_from_args(args)
    folder = Path(args.resume)
    console.print(f"[bold]protofl run --resume[/] {folder}", highlight=False)
    observer = None if args.quiet else ProgressObserver(console, None)
    with observer or contextlib.nullcontext():
        return resume(folder, observer, changes)


if __name__ == "__main__":
    sys.exit(main())
