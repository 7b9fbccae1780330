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
import statistics
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from protofl import __version__, results
from protofl.algorithms import ALGORITHMS
from protofl.api import RunResult, resume, run
from protofl.config import RunConfig, build_config, merge
from protofl.errors import ConfigError
from protofl.records import Observer
from protofl.run_folder import provenance

logger = logging.getLogger(__name__)
LAST = results.LAST_ROUNDS
DISPLAY_NAMES = {"mnist": "MNIST", "usps": "USPS", "svhn": "SVHN", "syn": "SYN", "dslr": "DSLR"}


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


def load_history(folder: Path) -> list[dict[str, Any]]:
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def tabulate(plan: ComparePlan) -> dict[str, Any]:
    """Per algorithm: per-domain and AVG accuracy (%), mean and std over seeds, of the mean
    over each run's last five rounds; plus every run's per-round mean accuracy."""
    rows: dict[str, Any] = {}
    domains: list[str] = []
    for algorithm in plan.algorithms:
        histories = {}
        for seed in plan.seeds:
            folder = plan.run_dir(algorithm, seed)
            histories[seed] = load_history(folder)
            saved = json.loads((folder / "config.json").read_text())
            domains = saved["resolved"]["domains"]  # the benchmark's order, as in the paper
        rows[algorithm] = _row(histories, domains, "per_domain_accuracy", "mean_accuracy")
        if all(h[-1].get("personal_accuracy") for h in histories.values()):
            # algorithms with local layers: each client's own model, beside the global one
            personal = _row(histories, domains, "personal_accuracy", "personal_mean_accuracy")
            rows[f"{algorithm} (personalised)"] = personal
    return {"domains": domains, "rows": rows, "seeds": list(plan.seeds)}


def _row(
    histories: Mapping[int, list[dict[str, Any]]], domains: list[str], per_domain: str, mean: str
) -> dict[str, Any]:
    """One table row: per-domain and AVG (%), each the mean over a run's last rounds, then
    mean and std over seeds; with every seed's per-round curve."""
    per_seed = []
    for history in histories.values():
        tail = history[-LAST:]
        scores = {d: 100 * statistics.fmean(r[per_domain][d] for r in tail) for d in domains}
        scores["AVG"] = statistics.fmean(scores[d] for d in domains)
        per_seed.append(scores)
    row: dict[str, Any] = {c: _mean_std([s[c] for s in per_seed]) for c in [*domains, "AVG"]}
    row["curves"] = {str(seed): [100 * r[mean] for r in h] for seed, h in histories.items()}
    return row


def _mean_std(values: list[float]) -> dict[str, float]:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0  # sample std (n - 1)
    return {"mean": statistics.fmean(values), "std": spread, "n": len(values)}


def markdown_table(table: dict[str, Any], meta: Mapping[str, Any]) -> str:
    domains = table["domains"]
    names = {d: DISPLAY_NAMES.get(d, d.capitalize()) for d in domains}
    lines = [
        f"Top-1 accuracy (%) on {meta['benchmark']}, mean over the last {LAST} rounds, "
        f"mean ± std over seeds {', '.join(map(str, table['seeds']))}.",
        "",
        "| Method | " + " | ".join(names[d] for d in domains) + " | AVG | seeds |",
        "|---|" + "---|" * (len(domains) + 2),
    ]
    for algorithm, row in table["rows"].items():
        cells = [_cell(row[c]) for c in [*domains, "AVG"]]
        lines.append(f"| {algorithm} | " + " | ".join(cells) + f" | {row['AVG']['n']} |")
    lines += [
        "",
        f"Command: `{meta['command']}`",
        f"Commit: {meta['commit']}; machine: {meta['machine']}; finished {meta['date']}.",
    ]
    return "\n".join(lines) + "\n"


def _cell(value: Mapping[str, float]) -> str:
    """``mean ± std`` over seeds; a single seed has no spread to show (n=1, not ± 0.00)."""
    if value["n"] < 2:
        return f"{value['mean']:.2f}"
    return f"{value['mean']:.2f} ± {value['std']:.2f}"


def describe_machine() -> str:
    cpu = platform.processor() or _cpu_model() or platform.machine()
    return (
        f"{cpu}, {os.cpu_count()} cores, {platform.system()}, Python "
        f"{platform.python_version()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def current_commit() -> str:
    """The commit of the protofl that runs (``+local changes`` when the tree was dirty)."""
    state = provenance()
    if state["commit"] is None:
        return f"protofl {__version__} (not a git checkout)"
    return str(state["commit"]) + ("+local changes" if state["uncommitted_changes"] else "")


def write_report(plan: ComparePlan, command: str, plots: bool = True) -> dict[str, Any]:
    """Write table.md, results.json and (with matplotlib) the plots into ``plan.out``."""
    table = tabulate(plan)
    first = plan.config(plan.algorithms[0], plan.seeds[0])
    meta = {
        "command": command,
        "benchmark": first.benchmark,
        "settings": dict(plan.settings),
        "commit": current_commit(),
        "machine": describe_machine(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    (plan.out / "table.md").write_text(markdown_table(table, meta))
    results.write_json(plan.out / "results.json", {"meta": meta, **table})
    if plots:
        from protofl import plots as plotting

        plotting.accuracy_per_round(table, plan.out / "accuracy_per_round.png", meta)
        plotting.per_domain(table, plan.out / "per_domain.png", meta)
        feature_run = _feature_run(plan)
        if feature_run is not None:
            plotting.feature_space(feature_run, plan.out / "features.png")
    return {"meta": meta, **table}


def _feature_run(plan: ComparePlan) -> Path | None:
    """The FPL run whose learned feature space is drawn (first seed), if FPL was compared."""
    for algorithm in plan.algorithms:
        if algorithm == "fpl":
            folder = plan.run_dir(algorithm, plan.seeds[0])
            return folder if (folder / "checkpoint.pt").exists() else None
    return None


def parse_list(text: str, kind: type[Any], what: str) -> tuple[Any, ...]:
    try:
        return tuple(kind(item.strip()) for item in text.split(",") if item.strip())
    except ValueError as err:
        raise ConfigError(f"--{what}: expected a comma-separated list; got {text!r}.") from err
