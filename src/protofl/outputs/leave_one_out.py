"""Leave-one-domain-out comparisons (``protofl compare --holdout each``): for every domain of
the benchmark, one ordinary comparison with that domain held out (no client holds it; the
global model is scored on all of its data every round), then one table: rows are methods,
columns the held-out domain and their mean.

Each held-out domain's comparison lives in ``<out>/holdout-<domain>/`` with its own
``runs/``, ``table.md`` and ``results.json`` (the in-domain accuracies of the other domains),
so an interrupted grid resumes where it stopped, like any comparison. The leave-one-out
cell is a run's held-out accuracy averaged over its last five rounds, then mean ± std over
seeds; the mean column averages a seed's held-out domains first, then goes over seeds.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from protofl.config import merge
from protofl.errors import ConfigError
from protofl.outputs import compare, report_stats, report_text, results
from protofl.outputs.report import FinishedRun

# FedBN-style personalised scores use each client's own BatchNorm layers; a domain that no
# client holds has no such layers, so only the global model is scored there.
PERSONAL_NOTE = (
    "Scores are the global model's; a personalised score (FedBN's local BatchNorm) is not "
    "defined for a domain that no client holds."
)


def domains_to_hold_out(plan: compare.ComparePlan) -> tuple[str, ...]:
    """The run's domains (``--domains``, else the benchmark's; a folder benchmark lists its
    folder), refusing a plan that already holds domains out."""
    from protofl.engine.loading import benchmark_of  # loads torch and the data stack

    if plan.settings.get("holdout_domains"):
        raise ConfigError(
            "--holdout each chooses the held-out domain itself; drop "
            "--set holdout_domains=... (or drop --holdout each to hold those out in every run)."
        )
    config = plan.config(plan.algorithms[0], plan.seeds[0])
    domains = config.domains or benchmark_of(config).domains
    if len(domains) < 2:
        raise ConfigError(
            f"--holdout each needs at least two domains (one to train on); got {list(domains)}."
        )
    return tuple(domains)


def sub_plans(plan: compare.ComparePlan) -> dict[str, compare.ComparePlan]:
    """One comparison per held-out domain, in ``<out>/holdout-<domain>/``."""
    return {
        domain: dataclasses.replace(
            plan,
            settings=merge(plan.settings, {"holdout_domains": [domain]}),
            out=plan.out / f"holdout-{domain}",
        )
        for domain in domains_to_hold_out(plan)
    }


def run_all(
    plans: Mapping[str, compare.ComparePlan],
    observer_for: compare.RunHook | None = None,
    starting: Callable[[str], None] | None = None,
) -> None:
    """Run (or finish, or skip) every held-out domain's grid; ``starting(domain)`` first."""
    for plan in plans.values():
        compare.check_plan(plan)  # every typo before the first run, not after hours
    for domain, plan in plans.items():
        if starting is not None:
            starting(domain)
        compare.run_grid(plan, observer_for)


def table(plans: Mapping[str, compare.ComparePlan]) -> dict[str, Any]:
    """Rows: algorithms; columns: held-out domains and ``mean`` (mean ± std over seeds)."""
    first = next(iter(plans.values()))
    rows: dict[str, Any] = {}
    for algorithm in first.algorithms:
        per_seed: dict[int, dict[str, float]] = {}
        for domain, plan in plans.items():
            for seed in plan.seeds:
                run = FinishedRun.load(plan.run_dir(algorithm, seed))
                per_seed.setdefault(seed, {})[domain] = held_out_accuracy(run, domain)
        row: dict[str, Any] = {
            d: report_stats.mean_std([s[d] for s in per_seed.values()]) for d in plans
        }
        row["mean"] = report_stats.mean_std(
            [statistics.fmean(s.values()) for s in per_seed.values()]
        )
        row["seeds"] = sorted(per_seed)
        rows[algorithm] = row
    return {"held_out": list(plans), "rows": rows, "note": PERSONAL_NOTE}


def held_out_accuracy(run: FinishedRun, domain: str) -> float:
    """Accuracy (%) on the held-out ``domain``, the mean over the run's last five rounds."""
    tail = [r["holdout_accuracy"][domain] for r in run.history[-results.LAST_ROUNDS :]]
    return 100 * statistics.fmean(tail)


def markdown(lodo: Mapping[str, Any], meta: Mapping[str, Any], rounds: int) -> str:
    columns = lodo["held_out"]
    lines = [
        f"Leave-one-domain-out accuracy (%) on {meta['benchmark']}: each column holds that "
        "domain out (no client holds it) and scores the global model on all of its data; "
        f"mean over the {results.window_text(rounds)}, then mean ± std over seeds. mean: the "
        f"seed's held-out domains averaged, then over seeds. {lodo['note']}",
        "",
        "| Method | " + " | ".join(columns) + " | mean | seeds |",
        "|---|" + "---|" * (len(columns) + 2),
    ]
    for algorithm, row in lodo["rows"].items():
        cells = [report_text.mean_std_text(row[c]) for c in [*columns, "mean"]]
        seeds = ",".join(map(str, row["seeds"]))
        lines.append(f"| {algorithm} | " + " | ".join(cells) + f" | {seeds} |")
    lines.append("")
    lines += [f"- holding out {d}: `holdout-{d}/table.md` (the other domains)" for d in columns]
    lines += ["", f"Command: `{meta['command']}`"]
    lines.append(f"Machine: {meta['machine']}; written {meta['date']}.")
    return "\n".join(lines) + "\n"


def write(
    plans: Mapping[str, compare.ComparePlan],
    out: Path,
    command: str,
    plots: bool = True,
    baseline: str | None = None,
) -> dict[str, Any]:
    """Each held-out domain's ordinary report, then the leave-one-out ``table.md`` and
    ``results.json`` in ``out``."""
    per_domain = {d: compare.write_report(p, command, plots, baseline) for d, p in plans.items()}
    first = next(iter(per_domain.values()))
    meta = {**first["meta"], "command": command}
    lodo = table(plans)
    rounds = min(report_text.shortest_run(r) for r in per_domain.values())
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(markdown(lodo, meta, rounds))
    everything = {
        "meta": meta,
        "leave_one_domain_out": lodo,
        "per_held_out_domain": {d: str(p.out) for d, p in plans.items()},
    }
    results.write_json(out / "results.json", everything)
    return everything
