"""A report's fairness columns and its paired statistics against a baseline.

Per run and window of last rounds (5, 10, 20): AVG, the sample std across domains (FedHEAL's
STD), the worst domain and the accuracy pooled over all test samples. Spread and worst
domain are those of the window's per-domain means, the numbers a table row shows side by
side. Against a baseline, seed by seed, per window: the mean difference, its t interval,
the paired t-test and the seeds needed for 80 % power (see :mod:`protofl.core.stats`). A window
longer than the runs is reported as too short, never shortened.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from protofl.core.stats import (
    ALPHA,
    CONFIDENCE,
    MAX_SEEDS,
    POWER,
    domain_std,
    paired_comparison,
    pooled_accuracy,
    worst_domain,
)

WINDOWS = (5, 10, 20)
METRICS = {"AVG": "AVG", "pooled": "pooled accuracy"}  # compared against the baseline
History = list[dict[str, Any]]


def mean_std(values: Sequence[float]) -> dict[str, float]:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0  # sample std (n - 1)
    return {"mean": statistics.fmean(values), "std": spread, "n": len(values)}


def window_scores(
    tail: History, domains: Sequence[str], sizes: Mapping[str, int] | None, per_domain: str
) -> dict[str, Any]:
    """One run's scores (%) over ``tail``, the records of its window."""
    scores = {d: 100 * statistics.fmean(r[per_domain][d] for r in tail) for d in domains}
    worst, worst_accuracy = worst_domain(scores)
    return {
        "AVG": statistics.fmean(scores.values()),
        "domain_std": domain_std(scores),
        "worst": worst_accuracy,
        "worst_domain": worst,
        "pooled": _pooled(tail, sizes, per_domain),
    }


def _pooled(tail: History, sizes: Mapping[str, int] | None, per_domain: str) -> float | None:
    """Mean pooled accuracy (%) of the records: as recorded, else from the run's test sizes
    (runs from before it was recorded); None when neither is there."""
    values = []
    for record in tail:
        # a record's own pooled figure is the global model's, not the personalised one
        value = record.get("pooled_accuracy") if per_domain == "per_domain_accuracy" else None
        if value is None and sizes is not None and set(record[per_domain]) <= set(sizes):
            value = pooled_accuracy(record[per_domain], sizes)
        if value is None:
            return None
        values.append(value)
    return 100 * statistics.fmean(values)


def fairness_columns(
    histories: Mapping[int, History],
    sizes: Mapping[int, Mapping[str, int] | None],
    domains: Sequence[str],
    per_domain: str,
    last: int,
) -> dict[str, Any]:
    """A row's fairness columns over its seeds (each run's last ``last`` rounds) and every
    run's scores per window (``None`` for a window longer than the runs)."""
    tails = {
        s: window_scores(h[-last:], domains, sizes[s], per_domain) for s, h in histories.items()
    }
    pooled = [t["pooled"] for t in tails.values()]
    rounds = min(len(h) for h in histories.values())
    windows: dict[str, Any] = {}
    for window in WINDOWS:
        if rounds < window:
            windows[f"last_{window}"] = None
            continue
        scores = [
            window_scores(h[-window:], domains, sizes[s], per_domain) for s, h in histories.items()
        ]
        windows[f"last_{window}"] = {k: [s[k] for s in scores] for k in scores[0]}
    return {
        "domain_std": mean_std([t["domain_std"] for t in tails.values()]),
        "worst": mean_std([t["worst"] for t in tails.values()]),
        "worst_domains": [t["worst_domain"] for t in tails.values()],
        "pooled": None if None in pooled else mean_std([p for p in pooled if p is not None]),
        "rounds": rounds,
        "windows": windows,
    }


def paired_statistics(row: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
    """Per metric and window: ``row`` minus ``base`` on every seed both ran."""
    common = [seed for seed in row["seeds"] if seed in base["seeds"]]
    result: dict[str, Any] = {}
    for metric in METRICS:
        result[metric] = {}
        for window in WINDOWS:
            key = f"last_{window}"
            ours, theirs = row["windows"][key], base["windows"][key]
            entry: dict[str, Any] = {"window": window, "seeds": common}
            if ours is None or theirs is None:
                entry.update(too_short=True, rounds=min(row["rounds"], base["rounds"]))
            else:
                entry.update(_compare(row["seeds"], ours[metric], base["seeds"], theirs[metric]))
            result[metric][key] = entry
    return result


def _compare(
    seeds: Sequence[int],
    ours: Sequence[float | None],
    base_seeds: Sequence[int],
    theirs: Sequence[float | None],
) -> dict[str, Any]:
    mine, other = dict(zip(seeds, ours, strict=True)), dict(zip(base_seeds, theirs, strict=True))
    pairs = [(mine[s], other[s]) for s in seeds if s in other]
    if not pairs:
        return {}
    differences = []
    for a, b in pairs:
        if a is None or b is None:
            return {"missing": True}  # a run that recorded no pooled accuracy nor test sizes
        differences.append(a - b)
    comparison = asdict(paired_comparison(differences))
    return {"differences": differences, "ahead": sum(d > 0 for d in differences), **comparison}


def comparison_text(entry: Mapping[str, Any]) -> str:
    """``+3.21 [-3.04, +9.46], p = 0.16, not separated; 7 seeds for 80 % power``."""
    if entry.get("too_short"):
        return f"runs have {entry['rounds']} rounds, fewer than {entry['window']}"
    if entry.get("missing"):
        return "missing (not recorded)"
    if not entry["seeds"]:
        return "no common seeds"
    head = f"{entry['mean']:+.2f}"
    if entry["ci_low"] is None:
        return f"{head} (one seed: no interval)"
    verdict = "separated" if entry["separated"] else "not separated"
    needed = entry["seeds_for_power"]
    if needed is not None:
        power = f"{needed} seeds for {POWER:.0%} power"
    elif entry["mean"] == 0:
        power = "no difference to power"
    else:
        power = f"over {MAX_SEEDS} seeds for {POWER:.0%} power"
    interval = f"[{entry['ci_low']:+.2f}, {entry['ci_high']:+.2f}]"
    p_value = entry["p_value"]
    p_text = f"{p_value:.2f}" if p_value >= 0.01 else f"{p_value:.1g}"
    return f"{head} {interval}, p = {p_text}, {verdict}; {power}"


def statistics_lines(table: Mapping[str, Any]) -> list[str]:
    """The markdown tables of the paired statistics (none without a baseline)."""
    baseline = table.get("baseline")
    if not baseline:
        return []
    lines = [
        "",
        f"Paired against {baseline}, seed by seed over the seeds both ran: mean difference "
        f"(points) [{CONFIDENCE:.0%} t interval], paired t-test p (two-sided), 'not "
        "separated' when the interval contains 0, and the seeds the observed spread of the "
        f"differences needs for {POWER:.0%} power at the observed difference (paired t, "
        f"two-sided alpha {ALPHA}, from the noncentral t).",
    ]
    header = " | ".join(f"last {w} rounds" for w in WINDOWS)
    for metric, title in METRICS.items():
        lines += ["", f"{title}:", "", f"| Method | seeds | {header} |"]
        lines.append("|---|---|" + "---|" * len(WINDOWS))
        for name, row in table["rows"].items():
            if "paired_statistics" not in row:
                continue
            entries = row["paired_statistics"][metric]
            cells = " | ".join(comparison_text(entries[f"last_{w}"]) for w in WINDOWS)
            seeds = ",".join(map(str, entries["last_5"]["seeds"]))
            lines.append(f"| {name} | {seeds} | {cells} |")
    return lines


def attack_columns(histories: Mapping[int, History], last: int) -> dict[str, Any]:
    """The backdoor's attack success rate (%), each seed's mean over its last rounds, then
    mean ± std over seeds; nothing when the runs scored none (no ``attack=backdoor``)."""
    per_seed = []
    for history in histories.values():
        tail = [r.get("attack_success_rate") for r in history[-last:]]
        scored = [value for value in tail if value is not None]
        if not scored:
            return {}
        per_seed.append(100 * statistics.fmean(scored))
    return {"attack_success_rate": mean_std(per_seed)}


def attack_lines(table: Mapping[str, Any], window: str) -> list[str]:
    """A markdown table of the backdoor's success rate, for rows whose runs scored one."""
    rows = {a: r for a, r in table["rows"].items() if r.get("attack_success_rate")}
    if not rows:
        return []
    lines = [
        "",
        f"Backdoor attack success rate (%): triggered test images of the other classes that "
        f"the global model assigns to the target class, mean over the {window}, mean ± std "
        "over seeds:",
        "",
        "| Method | attack success rate |",
        "|---|---|",
    ]
    for name, row in rows.items():
        value = row["attack_success_rate"]
        text = f"{value['mean']:.2f}" + (f" ± {value['std']:.2f}" if value["n"] > 1 else "")
        lines.append(f"| {name} | {text} |")
    return lines
