"""The text of a report: ``table.md`` (the table, the held-out and validation tables, the
attack and paired statistics lines, provenance) and the cells the console and the
leave-one-domain-out table share. The numbers come from :func:`protofl.outputs.report.tabulate`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from protofl.outputs import report_stats, results

DISPLAY_NAMES = {"mnist": "MNIST", "usps": "USPS", "svhn": "SVHN", "syn": "SYN", "dslr": "DSLR"}


def paired_text(paired: Mapping[str, Any] | None) -> str:
    """``+1.46, +3.28, +1.54 (ahead 3/3)``; empty without common seeds."""
    if not paired or not paired["differences"]:
        return ""
    values = ", ".join(f"{d:+.2f}" for d in paired["differences"])
    return f"{values} (ahead {paired['ahead']}/{len(paired['differences'])})"


def shortest_run(table: Mapping[str, Any]) -> int:
    """Rounds of the shortest run in the table (what its window can cover)."""
    return min(len(c) for row in table["rows"].values() for c in row["curves"].values())


def markdown_table(table: Mapping[str, Any], meta: Mapping[str, Any]) -> str:
    domains = table["domains"]
    names = {d: DISPLAY_NAMES.get(d, d.capitalize()) for d in domains}
    rounds = shortest_run(table)
    lines = [
        f"Top-1 accuracy (%) on {meta['benchmark']}, mean over the {results.window_text(rounds)} "
        "of each run, mean ± std over its seeds (one seed: no ±). std: sample std across the "
        "domains (as FedHEAL reports it); worst: the lowest domain (named when every seed "
        "agrees); pooled: correct over all test samples of all domains.",
        "",
        "| Method | " + " | ".join(names[d] for d in domains) + " | AVG | std | worst | pooled "
        "| seeds |",
        "|---|" + "---|" * (len(domains) + 5),
    ]
    baseline = table.get("baseline")
    if baseline:
        lines[0] += f" Last column: AVG minus {baseline}'s AVG, seed by seed (paired)."
        lines[2] += f" vs {baseline}, per seed |"
        lines[3] += "---|"
    for algorithm, row in table["rows"].items():
        cells = [mean_std_text(row[c]) for c in [*domains, "AVG", "domain_std"]]
        cells += [worst_text(row, names), mean_std_text(row["pooled"])]
        seeds = ",".join(map(str, row["seeds"]))
        extra = f" {paired_text(row.get('paired'))} |" if baseline else ""
        lines.append(f"| {algorithm} | " + " | ".join(cells) + f" | {seeds} |" + extra)
    lines += _validation_lines(table)
    lines += _holdout_lines(table)
    lines += report_stats.attack_lines(table, results.window_text(rounds))
    lines += report_stats.statistics_lines(table)
    lines += ["", *_provenance_lines(table), "", f"Command: `{meta['command']}`"]
    lines.append(f"Machine: {meta['machine']}; written {meta['date']}.")
    return "\n".join(lines) + "\n"


def _holdout_lines(table: Mapping[str, Any]) -> list[str]:
    """The unseen domains' accuracy, for rows whose runs held domains out."""
    rows = {a: r["holdout"] for a, r in table["rows"].items() if r.get("holdout")}
    if not rows:
        return []
    columns = list(next(iter(rows.values())))
    lines = [
        "",
        f"Accuracy (%) on held-out domains (holdout_domains: no client holds them; all of "
        f"each one's samples), mean over the {results.window_text(shortest_run(table))}, "
        "mean ± std over seeds:",
        "",
        "| Method | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for algorithm, holdout in rows.items():
        cells = [mean_std_text(holdout.get(c)) for c in columns]
        lines.append(f"| {algorithm} | " + " | ".join(cells) + " |")
    return lines


def _validation_lines(table: Mapping[str, Any]) -> list[str]:
    """Test AVG at the best validation round, for rows whose runs held out a validation split."""
    rows = {a: r for a, r in table["rows"].items() if r.get("at_best_validation")}
    if not rows:
        return []
    lines = [
        "",
        "Test AVG (%) at each run's round of best validation AVG (validation_fraction: held out"
        " of the clients' training data), mean ± std over seeds; the rounds it picked:",
        "",
        "| Method | test AVG at best validation round | rounds |",
        "|---|---|---|",
    ]
    for algorithm, row in rows.items():
        picked = ", ".join(map(str, row["best_validation_rounds"]))
        lines.append(f"| {algorithm} | {mean_std_text(row['at_best_validation'])} | {picked} |")
    return lines


def mean_std_text(value: Mapping[str, float] | None) -> str:
    """``mean ± std`` over seeds; one seed has no spread to show (no ``± 0.00``); ``None``
    (a figure some run did not record) is "missing"."""
    if value is None:
        return "missing"
    if value["n"] < 2:
        return f"{value['mean']:.2f}"
    return f"{value['mean']:.2f} ± {value['std']:.2f}"


def worst_text(row: Mapping[str, Any], names: Mapping[str, str] | None = None) -> str:
    """The worst domain's accuracy over seeds, named when it is the same domain in every seed."""
    text = mean_std_text(row["worst"])
    if len(set(row["worst_domains"])) == 1:
        domain = row["worst_domains"][0]
        text += f" ({(names or {}).get(domain, domain)})"
    return text


def _provenance_lines(table: Mapping[str, Any]) -> list[str]:
    """Which precision and commit produced each row's seeds (where the runs recorded it),
    rows with the same story on one line."""
    stories: dict[str, list[str]] = {}
    for algorithm, row in table["rows"].items():
        if algorithm.endswith("(personalised)"):
            continue
        parts = [
            f"seed {seed}: {fact['precision'] or '?'}"
            + (f" @ {fact['commit']}" if fact.get("commit") else "")
            for seed, fact in zip(row["seeds"], row["facts"], strict=True)
        ]
        precisions = {f["precision"] for f in row["facts"]}
        commits = {f.get("commit") for f in row["facts"]}
        mixed = (
            " (mixed precisions)"
            if len(precisions) > 1 or any(p and "+" in p for p in precisions)
            else ""
        )
        if len(commits) > 1 or any(c and "+" in c for c in commits):
            mixed += " (mixed commits)"
        stories.setdefault("; ".join(parts) + mixed, []).append(algorithm)
    lines = [f"- {', '.join(names)}: {story}" for story, names in stories.items()]
    for algorithm, row in table["rows"].items():
        if row.get("changed_options") and not algorithm.endswith("(personalised)"):
            changed = ", ".join(f"{k}={v}" for k, v in row["changed_options"].items())
            lines.append(f"- {algorithm}: options not at protofl's defaults: {changed}")
    return lines
