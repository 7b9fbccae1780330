"""The ``protofl`` command: parses arguments, builds a config, calls the library, draws."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import logging
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from protofl import __version__
from protofl.config import options_not_running, parse_assignments
from protofl.config.arguments import add_settings, config_from_args, settings_from_args
from protofl.errors import ConfigError, ProtoflError, TrainingError
from protofl.flower.cli import add_flower_commands, run_flower_command
from protofl.outputs.reporting import (
    ProgressObserver,
    print_comparison,
    print_config,
    print_leave_one_out,
    print_listing,
    print_results,
)

if TYPE_CHECKING:
    from protofl.api import RunResult

# The library (torch, the data stack, the simulator) is imported inside the commands, after
# the settings are checked: a typo comes back before any of it loads.


BASELINE_HELP = (
    "paired differences to this algorithm per seed, with intervals, p-values and the seeds "
    "needed for 80%% power over the last 5, 10 and 20 rounds"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="protofl", description="Federated prototype learning (FPL) across data domains."
    )
    parser.add_argument("--version", action="version", version=f"protofl {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="train a federation and report per-domain accuracy")
    run.add_argument("--algorithm", "-a", help="algorithm name (default: fpl)")
    run.add_argument("--seed", type=int, help="the one seed everything derives from")
    run.add_argument("--out", help="output directory (default: runs/<algo>-<bench>-<time>)")
    add_settings(run)
    run.add_argument("--overwrite", action="store_true", help="replace results in --out")
    run.add_argument(
        "--resume", metavar="DIR", help="continue the run saved in DIR from its last checkpoint"
    )
    compare = commands.add_parser(
        "compare", help="run several algorithms over seeds; write a table, JSON and plots"
    )
    compare.add_argument(
        "--algorithms", required=True, help="comma-separated algorithm names, or 'all'"
    )
    compare.add_argument("--seeds", default="0,1", help="comma-separated seeds (default 0,1)")
    compare.add_argument("--out", help="output folder (default: runs/compare-<bench>-<time>)")
    compare.add_argument("--no-plots", action="store_true", help="table and JSON only")
    compare.add_argument("--baseline", help=BASELINE_HELP)
    compare.add_argument(
        "--holdout",
        choices=["each"],
        help="each: one comparison per domain held out (no client holds it) and the "
        "leave-one-domain-out table (rows: methods; columns: held-out domain, mean)",
    )
    add_settings(compare)
    report = commands.add_parser(
        "report", help="table, JSON and plots from finished run folders (any commands, days)"
    )
    report.add_argument("runs", nargs="+", help="run folders, or folders holding them")
    report.add_argument("--out", required=True, help="where table.md, results.json, plots go")
    report.add_argument("--no-plots", action="store_true", help="table and JSON only")
    report.add_argument("--baseline", help=BASELINE_HELP)
    export = commands.add_parser("export", help="the trained model as safetensors + JSON")
    export.add_argument("run_dir", help="a finished run folder")
    export.add_argument("--out", required=True, help="folder for model.safetensors and model.json")
    commands.add_parser("list", help="show algorithms, benchmarks, models and presets")
    add_flower_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(stderr=True)
    if args.command == "list":
        print_listing(Console())
        return 0
    if args.command == "flower":
        return run_flower_command(args)
    logging.basicConfig(
        level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    resume_hint: list[str] = []  # the exact command that continues this run, once known
    try:
        if args.command == "report":
            return _report(args, console, argv)
        if args.command == "export":
            from protofl.outputs.export import export_run

            for path in export_run(Path(args.run_dir), Path(args.out)):
                print(path)
            return 0
        if args.command == "compare":
            resume_hint.append("run the same protofl compare command again")
            return _compare(args, console, argv)
        if args.resume:
            resume_hint.append(f"protofl run --resume {shlex.quote(args.resume)}")
            result = _resume(args, console)
        else:
            result = _run(args, console, resume_hint)
    except ProtoflError as err:
        console.print(f"[bold red]error:[/] {err}", highlight=False)
        if isinstance(err, TrainingError) and resume_hint and "--resume" in resume_hint[0]:
            console.print(
                "the rounds before it are saved; continue with a changed setting: "
                f"{resume_hint[0]} --set lr=<smaller> (rounds, lr, momentum and weight_decay "
                "may change on resume)",
                highlight=False,
            )
        return 2
    except KeyboardInterrupt:
        how = resume_hint[0] if resume_hint else "nothing was saved yet"
        console.print(
            f"[yellow]interrupted[/]: the rounds finished so far are saved; continue: {how}",
            highlight=False,
        )
        return 130
    print_results(Console(), result)
    return 0


def where_it_runs(resolved: dict[str, Any]) -> str:
    """What device=auto and precision=auto became: 'cuda:0 (NVIDIA H100, bf16)' or
    'cpu (fp32, 2 threads)', so a silent fallback to the CPU shows at once."""
    import torch

    device = str(resolved.get("device", "?"))
    precision = resolved.get("precision", "?")
    if device.startswith("cuda") and torch.cuda.is_available():
        name = torch.cuda.get_device_name(torch.device(device))
        return f"{device} ({name}, {precision})"
    return f"{device} ({precision}, {torch.get_num_threads()} threads)"


def _observer(args: argparse.Namespace, console: Console, clients: int | None) -> Any:
    return contextlib.nullcontext() if args.quiet else ProgressObserver(console, clients)


def _warn_idle_options(args: argparse.Namespace, console: Console, running: Sequence[str]) -> None:
    """Options given with --set for an algorithm that will not run are accepted (a preset
    holds every algorithm's) but do nothing: say so. Presets' own tables are not named."""
    from protofl.algorithms import ALGORITHMS

    given = parse_assignments(args.set)
    sections = [key for key, value in given.items() if isinstance(value, dict)]
    warning = options_not_running(
        [key for key in sections if key in ALGORITHMS],
        running,
        lambda name: " ".join(f"--set {name}.{key}=..." for key in given[name]),
    )
    if warning:
        console.print(f"[yellow]warning[/]: {warning}", highlight=False)


def _run(args: argparse.Namespace, console: Console, resume_hint: list[str]) -> RunResult:
    config = config_from_args(args)  # every setting checked before the library loads
    _warn_idle_options(args, console, [config.algorithm])
    from protofl.outputs.run_folder import default_out

    if config.out is None:  # name the folder now, so the user knows it from the start
        config = dataclasses.replace(config, out=str(default_out(config)))
    print_config(console, config)
    console.print(f"writing to [bold]{config.out}[/]", highlight=False)
    resume_hint.append(f"protofl run --resume {shlex.quote(str(config.out))}")
    from protofl.api import execute
    from protofl.builders import prepare, torch_threads
    from protofl.federation.participation import participants

    with torch_threads(config.threads):
        simulation, resolved = prepare(config)
        console.print(f"running on {where_it_runs(resolved)}", highlight=False)
    per_round = participants(len(simulation.federation.clients), config.clients_per_round)
    with _observer(args, console, per_round) as observer:
        return execute(simulation, config, resolved, observer, overwrite=args.overwrite)


def _resume(args: argparse.Namespace, console: Console) -> RunResult:
    from protofl.api import resume

    changes = settings_from_args(args)
    folder = Path(args.resume)
    console.print(f"[bold]protofl run --resume[/] {folder}", highlight=False)
    with _observer(args, console, None) as observer:
        return resume(folder, observer, changes)


def _report(args: argparse.Namespace, console: Console, argv: Sequence[str] | None) -> int:
    from protofl.outputs.compare import current_commit, describe_machine
    from protofl.outputs.report import find_runs, group_runs, write_report

    skipped: list[Path] = []
    groups = group_runs(find_runs([Path(p) for p in args.runs], skipped))
    for folder in skipped:
        console.print(f"[yellow]left out, not finished[/]: {folder}", highlight=False)
    meta = {
        "command": "protofl " + shlex.join(sys.argv[1:] if argv is None else list(argv)),
        "commit": current_commit(),
        "machine": describe_machine(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    out = Path(args.out)
    print_comparison(
        Console(), write_report(groups, out, meta, not args.no_plots, args.baseline), out
    )
    return 0


def _compare(args: argparse.Namespace, console: Console, argv: Sequence[str] | None) -> int:
    from protofl.algorithms import ALGORITHMS
    from protofl.outputs.compare import ComparePlan, parse_list, run_grid, write_report

    settings = settings_from_args(args)
    settings.pop("out", None)
    names = (
        ALGORITHMS.names()
        if args.algorithms == "all"
        else parse_list(args.algorithms, str, "algorithms")
    )
    _warn_idle_options(args, console, names)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out or f"runs/compare-{settings.get('benchmark', 'embedded')}-{stamp}")
    plan = ComparePlan(tuple(names), parse_list(args.seeds, int, "seeds"), settings, out)
    if args.baseline is not None and args.baseline not in plan.algorithms:
        raise ConfigError(  # now, not after hours of training
            f"--baseline {args.baseline!r} is not among --algorithms ({', '.join(names)})."
        )

    def observer_for(algorithm: str, seed: int, index: int, total: int) -> Any:
        console.print(f"[bold]run {index + 1}/{total}[/]: {algorithm}, seed {seed}")
        return None if args.quiet else ProgressObserver(console, None)

    command = "protofl " + shlex.join(sys.argv[1:] if argv is None else list(argv))
    if args.holdout == "each":
        return _leave_one_out(plan, observer_for, command, args, out)
    run_grid(plan, observer_for)
    report = write_report(plan, command, not args.no_plots, args.baseline)
    print_comparison(Console(), report, out)
    return 0


def _leave_one_out(
    plan: Any, observer_for: Any, command: str, args: argparse.Namespace, out: Path
) -> int:
    from protofl.outputs import leave_one_out

    plans = leave_one_out.sub_plans(plan)
    console = Console(stderr=True)

    def starting(domain: str) -> None:
        console.print(f"[bold]holding out {domain}[/]", highlight=False)

    leave_one_out.run_all(plans, observer_for, starting)
    written = leave_one_out.write(plans, out, command, not args.no_plots, args.baseline)
    print_leave_one_out(Console(), written, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
