"""Compare algorithms over seeds on one benchmark: run the grid, then tabulate and plot.

Every (algorithm, seed) is an ordinary run in ``<out>/runs/<algorithm>-seed<seed>/``, so a
comparison that crashes picks up where it stopped: finished runs are kept, interrupted ones
resume from their checkpoint. The table follows the paper's layout: per-domain top-1
accuracy and their unweighted mean (AVG), each averaged over the last five rounds (as the
paper reports) and given as mean +- standard deviation over seeds.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import platform
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from protofl import __version__
from protofl.algorithms import ALGORITHMS
from protofl.api import RunResult, resume, run
from protofl.config import RunConfig, build_config, merge
from protofl.core.records import Observer
from protofl.errors import ConfigError
from protofl.outputs import report
from protofl.outputs.report import FinishedRun
from protofl.outputs.run_folder import cpu_model, provenance

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ComparePlan:
    """Which algorithms and seeds to run, on which settings, into which folder."""

    algorithms: tuple[str, ...]
    seeds: tuple[int, ...]
    settings: Mapping[str, Any]  # layered settings without algorithm, seed and out
    out: Path

    def config(self, algorithm: str, seed: int) -> RunConfig:
        folder = self.run_dir(algorithm, seed)
        values = merge(self.settings, {"algorithm": algorithm, "seed": seed, "out": str(folder)})
        return build_config(values, ALGORITHMS.names())

    def run_dir(self, algorithm: str, seed: int) -> Path:
        return self.out / "runs" / f"{algorithm}-seed{seed}"


def check_plan(plan: ComparePlan) -> None:
    """Fail before any training on typos and on settings the grid decides itself."""
    if not plan.algorithms or not plan.seeds:
        raise ConfigError("compare needs at least one algorithm and one seed.")
    for name in plan.algorithms:
        ALGORITHMS.get(name)
    clash = {"algorithm", "seed", "out"} & set(plan.settings)
    if clash:
        raise ConfigError(f"compare sets {sorted(clash)} itself; use --algorithms/--seeds/--out.")
    plan.config(plan.algorithms[0], plan.seeds[0])  # validates every other setting


RunHook = Callable[[str, int, int, int], Observer | None]  # (algorithm, seed, index, total)


def run_grid(plan: ComparePlan, observer_for: RunHook | None = None) -> list[Path]:
    """Run (or finish, or skip) every (algorithm, seed); return the run folders."""
    check_plan(plan)
    folders = []
    grid = [(a, s) for a in plan.algorithms for s in plan.seeds]
    for index, (algorithm, seed) in enumerate(grid):
        config, folder = plan.config(algorithm, seed), plan.run_dir(algorithm, seed)
        if _finished(folder, config.rounds):
            logger.info("%s seed %d: already finished, kept", algorithm, seed)
        else:
            observer = observer_for(algorithm, seed, index, len(grid)) if observer_for else None
            with observer if isinstance(observer, AbstractContextManager) else nullcontext():
                _run_one(config, folder, observer)
        folders.append(folder)
    return folders


def _run_one(config: RunConfig, folder: Path, observer: Observer | None) -> RunResult:
    """Resume an interrupted run from its checkpoint, or start it afresh."""
    if (folder / "checkpoint.pt").exists():
        return resume(folder, observer, {"threads": config.threads})
    return run(config, observer, overwrite=True)


def _finished(folder: Path, rounds: int) -> bool:
    summary = folder / "summary.json"
    return summary.exists() and json.loads(summary.read_text()).get("rounds") == rounds


def describe_machine() -> str:
    cpu = cpu_model()
    return (
        f"{cpu}, {os.cpu_count()} cores, {platform.system()}, Python "
        f"{platform.python_version()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )


def current_commit() -> str:
    """The commit of the protofl that runs (``+local changes`` when the tree was dirty)."""
    state = provenance()
    if state["commit"] is None:
        return f"protofl {__version__} (not a git checkout)"
    return str(state["commit"]) + ("+local changes" if state["uncommitted_changes"] else "")


def write_report(
    plan: ComparePlan, command: str, plots: bool = True, baseline: str | None = None
) -> dict[str, Any]:
    """Write table.md, results.json and (with matplotlib) the plots into ``plan.out``, from
    the plan's run folders, as ``protofl report`` does from any run folders."""
    runs = [FinishedRun.load(plan.run_dir(a, s)) for a in plan.algorithms for s in plan.seeds]
    meta = {
        "command": command,
        "settings": dict(plan.settings),
        "commit": current_commit(),
        "machine": describe_machine(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    groups = report.group_runs(runs)
    ordered = {name: groups[name] for name in plan.algorithms}  # as the command listed them
    return report.write_report(ordered, plan.out, meta, plots, baseline)


def parse_list(text: str, kind: type[Any], what: str) -> tuple[Any, ...]:
    try:
        return tuple(kind(item.strip()) for item in text.split(",") if item.strip())
    except ValueError as err:
        raise ConfigError(f"--{what}: expected a comma-separated list; got {text!r}.") from err
