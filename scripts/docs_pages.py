"""Write the pages whose numbers come from result files, so that no figure is typed by hand.

    python scripts/docs_pages.py           # (re)write README.md, docs/results.md, docs/cli.md
    python scripts/docs_pages.py --check   # exit 1 and name the stale pages (the suite runs it)

Templates live in ``docs/templates/``; a placeholder ``{{ KIND ARG ... }}`` is replaced by a
figure read from ``benchmarks/results/``:

- ``{{ table DIR [METHOD,...] }}``: the accuracy table of ``DIR/results.json`` (per domain,
  AVG, std across domains, worst domain, pooled, seeds, and the paired column when the
  report had a baseline); the methods in the order given, or all of them;
- ``{{ cell DIR METHOD KEY }}``: ``mean ± std`` over seeds (one seed: the mean), KEY a
  domain, ``AVG``, ``domain_std``, ``worst`` or ``pooled``; ``{{ mean ... }}``: the mean only;
- ``{{ seeds DIR METHOD [KEY] }}``: the per-seed values of KEY over the last 5 rounds;
- ``{{ diffs DIR METHOD }}``: the paired per-seed differences to the baseline;
- ``{{ paired DIR METHOD METRIC WINDOW [FIELD] }}``: the paired statistics against the
  baseline (``+3.21 [-3.05, +9.47], p 0.16``), or one FIELD of them (``ahead``,
  ``seeds_for_power``, ``mean``);
- ``{{ round DIR METHOD SEED ROUND }}``: AVG of one seed's run in one round;
- ``{{ json FILE KEY.KEY... [FORMAT] }}``: any value of any JSON file under benchmarks/results
  (FORMAT a Python format spec, or ``pct`` for a fraction in percent; ``~`` in a key is a
  space);
- ``{{ seconds RUN FIRST LAST }}``: the median seconds a round took in rounds FIRST..LAST;
- ``{{ metric RUN ROUND KEY.KEY [FORMAT] }}``: one figure of one round of a run folder;
- ``{{ robust DIR ALGORITHM ATTACK DEFENCE [avg|asr|domain:NAME|share:NAME|seed:S] }}``: one
  cell of a robustness grid (``benchmarks/robustness_grid.py``);
- ``{{ lodo DIR [METHOD [COLUMN]] }}``: the leave-one-domain-out table of ``DIR``, or a cell;
- ``{{ include FILE }}``: a text file under benchmarks/results as it is (a script's table);
- ``{{ command DIR }}``, ``{{ machine DIR }}``: how the table was made, and where.

``docs/cli.md`` is generated from the command line's parser and ``RunConfig``'s fields.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import statistics
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TEMPLATES = ROOT / "docs" / "templates"
PLACEHOLDER = re.compile(r"\{\{\s*(.*?)\s*\}\}")

METHOD_NAMES = {
    "fedavg": "FedAvg",
    "fedprox": "FedProx",
    "moon": "MOON",
    "feddyn": "FedDyn",
    "fedopt": "FedOPT (FedAdam)",
    "fedproc": "FedProc",
    "fedproto": "FedProto",
    "fpl": "FPL",
    "fpl-cpcl-only": "FPL, CPCL only",
    "fpl-upcr-only": "FPL, UPCR only",
    "fpl-global-consistency": "FPL, UPCR towards G",
    "fpl-global-contrast": "FPL, CPCL against G",
    "fedbn": "FedBN (global model)",
    "fedbn (personalised)": "FedBN (personalised)",
    "fedheal": "FedAvg + FedHEAL",
    "fedplvm": "FedPLVM",
    "feddap": "FedDAP",
    "fpl-fedheal": "FPL + FedHEAL",
}
DOMAIN_NAMES = {"dslr": "DSLR", "mnist": "MNIST", "usps": "USPS", "svhn": "SVHN", "syn": "SYN"}
WINDOWS = {"5": "last_5", "10": "last_10", "20": "last_20"}


class TemplateError(ValueError):
    """A placeholder that names something the result files do not hold."""


def load(directory: str) -> dict[str, Any]:
    path = RESULTS / directory / "results.json"
    if not path.is_file():
        raise TemplateError(f"{path.relative_to(ROOT)} does not exist")
    return json.loads(path.read_text())


def row_of(results: Mapping[str, Any], directory: str, method: str) -> Mapping[str, Any]:
    if method not in results["rows"]:
        raise TemplateError(f"{directory} has no row {method!r}; rows: {list(results['rows'])}")
    return results["rows"][method]


def mean_std(value: Mapping[str, float]) -> str:
    if value["n"] < 2:
        return f"{value['mean']:.2f}"
    return f"{value['mean']:.2f} ± {value['std']:.2f}"


def signed(values: list[float]) -> str:
    return ", ".join(f"{v:+.2f}" for v in values)


def domain_name(domain: str) -> str:
    return DOMAIN_NAMES.get(domain, domain.replace("_", " ").capitalize())


def table(directory: str, methods: str = "") -> str:
    results = load(directory)
    domains = results["domains"]
    chosen = methods.split(",") if methods else list(results["rows"])
    baseline = results.get("baseline")
    rows = [row_of(results, directory, method) for method in chosen]
    # Reports written before the fairness columns existed lack them: leave the columns out.
    fair = all("domain_std" in row for row in rows)
    head = [*map(domain_name, domains), "AVG"]
    head += ["std", "worst", "pooled"] if fair else []
    head.append("seeds")
    if baseline:
        head.append(f"vs {METHOD_NAMES.get(baseline, baseline)}, per seed")
    lines = ["| Method | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]
    for method, row in zip(chosen, rows, strict=True):
        cells = [mean_std(row[key]) for key in [*domains, "AVG"]]
        if fair:
            worst = mean_std(row["worst"])
            if len(set(row["worst_domains"])) == 1:
                worst += f" ({domain_name(row['worst_domains'][0])})"
            cells += [mean_std(row["domain_std"]), worst, mean_std(row["pooled"])]
        cells.append(", ".join(map(str, row["seeds"])))
        if baseline:
            paired = row.get("paired")
            cells.append(signed(paired["differences"]) if paired else "")
        name = METHOD_NAMES.get(method, method)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cell(directory: str, method: str, key: str) -> str:
    return mean_std(_value(directory, method, key))


def mean(directory: str, method: str, key: str) -> str:
    return f"{_value(directory, method, key)['mean']:.2f}"


def _value(directory: str, method: str, key: str) -> Mapping[str, float]:
    row = row_of(load(directory), directory, method)
    if key not in row or not isinstance(row[key], dict) or "mean" not in row[key]:
        raise TemplateError(f"{directory}/{method} has no figure {key!r}")
    return row[key]


def seeds(directory: str, method: str, key: str = "AVG") -> str:
    row = row_of(load(directory), directory, method)
    return ", ".join(f"{v:.2f}" for v in row["windows"]["last_5"][key])


def diffs(directory: str, method: str) -> str:
    paired = row_of(load(directory), directory, method).get("paired")
    if not paired:
        raise TemplateError(f"{directory}/{method} has no paired differences (no baseline?)")
    return signed(paired["differences"])


def paired(directory: str, method: str, metric: str, window: str, field: str = "") -> str:
    row = row_of(load(directory), directory, method)
    try:
        stats = row["paired_statistics"][metric][WINDOWS[window]]
    except KeyError as missing:
        raise TemplateError(f"{directory}/{method}: no paired {metric} over {window}") from missing
    if field:
        value = stats[field]
        return f"{value:+.2f}" if isinstance(value, float) else str(value)
    return (
        f"{stats['mean']:+.2f} [{stats['ci_low']:+.2f}, {stats['ci_high']:+.2f}], "
        f"p {stats['p_value']:.2f}"
    )


def round_value(directory: str, method: str, seed: str, round_: str) -> str:
    curves = row_of(load(directory), directory, method)["curves"]
    return f"{curves[seed][int(round_) - 1]:.2f}"


def json_value(file: str, keys: str, form: str = "") -> str:
    path = RESULTS / file
    if not path.is_file():
        raise TemplateError(f"{path.relative_to(ROOT)} does not exist")
    value: Any = json.loads(path.read_text())
    for key in keys.replace("~", " ").split("."):  # "~" stands for a space inside a key
        try:
            value = value[int(key)] if isinstance(value, list) else value[key]
        except (KeyError, IndexError, ValueError) as missing:
            raise TemplateError(f"{file} has no {keys!r} (stopped at {key!r})") from missing
    if form == "pct":  # a fraction shown in percent, as the tables show accuracy
        return f"{100 * value:.2f}"
    return format(value, form) if form else str(value)


def round_seconds(run: str, first: str, last: str) -> str:
    """Median seconds (training + evaluation) of rounds FIRST..LAST of one run folder."""
    path = RESULTS / run / "metrics.jsonl"
    if not path.is_file():
        raise TemplateError(f"{path.relative_to(ROOT)} does not exist")
    rounds = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    chosen = [r["train_seconds"] + r["eval_seconds"] for r in rounds[int(first) - 1 : int(last)]]
    if not chosen:
        raise TemplateError(f"{run} has no rounds {first}..{last}")
    return f"{statistics.median(chosen):.1f}"


def round_metric(run: str, round_: str, keys: str, form: str = "pct") -> str:
    """One figure of one round of a run folder's metrics.jsonl (``pct``: a fraction in %)."""
    path = RESULTS / run / "metrics.jsonl"
    if not path.is_file():
        raise TemplateError(f"{path.relative_to(ROOT)} does not exist")
    rounds = {r["round"]: r for r in map(json.loads, path.read_text().splitlines())}
    if int(round_) not in rounds:
        raise TemplateError(f"{run} has no round {round_}")
    value: Any = rounds[int(round_)]
    for key in keys.split("."):
        if key not in value:
            raise TemplateError(f"{run} round {round_} has no {keys!r}")
        value = value[key]
    return f"{100 * value:.1f}" if form == "pct" else format(value, form)


def robust(directory: str, algorithm: str, attack: str, defence: str, what: str = "avg") -> str:
    """One cell of a robustness grid (``robustness.json``): ``avg``, ``asr`` (the backdoor's
    success rate), ``domain:NAME`` or ``share:NAME`` (a domain's or the ``malicious`` clients'
    share of the server's weight, where the rule records it), as ``mean ± std`` over its
    seeds, or ``seed:S`` (the AVG of seed S alone)."""
    path = RESULTS / directory / "robustness.json"
    if not path.is_file():
        raise TemplateError(f"{path.relative_to(ROOT)} does not exist")
    rows = json.loads(path.read_text())["rows"]
    found = [
        r
        for r in rows
        if (r["algorithm"], r["attack"], r["defence"]) == (algorithm, attack, defence)
    ]
    if not found:
        raise TemplateError(f"{directory} has no cell {algorithm} / {attack} / {defence}")
    row = found[0]
    if what == "avg":
        value = row["avg"]
    elif what == "asr":
        value = row["attack_success_rate"]
    elif what.startswith("seed:"):  # one seed's AVG, where the seeds disagree
        seed_avg = row.get("avg_by_seed", {}).get(what.removeprefix("seed:"))
        value = None if seed_avg is None else {"mean": seed_avg, "std": 0.0, "n": 1}
    elif what.startswith("domain:"):
        value = row["per_domain"].get(what.removeprefix("domain:"))
    elif what.startswith("share:"):  # a domain's (or the liars') share of the server's weight
        value = (row.get("weight_share") or {}).get(what.removeprefix("share:"))
    else:
        raise TemplateError(
            f"robust: unknown figure {what!r} (avg, asr, domain:NAME, seed:S, share:NAME)"
        )
    if value is None:
        raise TemplateError(f"{directory}: {algorithm} / {attack} / {defence} has no {what}")
    return mean_std(value)


def lodo(directory: str, method: str = "", column: str = "") -> str:
    """The leave-one-domain-out table of ``protofl compare --holdout each`` (rows: methods,
    columns: the held-out domain and the mean), or one cell of it."""
    table_of = load(directory).get("leave_one_domain_out")
    if table_of is None:
        raise TemplateError(f"{directory}/results.json has no leave-one-domain-out table")
    rows, columns = table_of["rows"], table_of["held_out"]
    if method:
        if method not in rows or (column or "mean") not in rows[method]:
            raise TemplateError(f"{directory}: no leave-one-out cell {method} / {column}")
        return mean_std(rows[method][column or "mean"])
    head = [*map(domain_name, columns), "mean", "seeds"]
    lines = ["| Method | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]
    for name, row in rows.items():
        cells = [mean_std(row[c]) for c in [*columns, "mean"]]
        cells.append(", ".join(map(str, row["seeds"])))
        lines.append(f"| {METHOD_NAMES.get(name, name)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def include(file: str) -> str:
    """A results file's text as it is (a table a benchmark script wrote)."""
    path = RESULTS / file
    if not path.is_file():
        raise TemplateError(f"{path.relative_to(ROOT)} does not exist")
    return path.read_text().strip()


def command(directory: str) -> str:
    return str(load(directory)["meta"]["command"])


def machine(directory: str) -> str:
    return str(load(directory)["meta"]["machine"])


KINDS: dict[str, Callable[..., str]] = {
    "table": table,
    "cell": cell,
    "mean": mean,
    "seeds": seeds,
    "diffs": diffs,
    "paired": paired,
    "round": round_value,
    "json": json_value,
    "seconds": round_seconds,
    "include": include,
    "lodo": lodo,
    "robust": robust,
    "metric": round_metric,
    "command": command,
    "machine": machine,
}


def render(template: str, where: str) -> str:
    def replace(match: re.Match[str]) -> str:
        kind, *args = match.group(1).split()
        if kind not in KINDS:
            raise TemplateError(f"{where}: unknown placeholder kind {kind!r}")
        try:
            return KINDS[kind](*args)
        except TypeError as wrong:
            raise TemplateError(f"{where}: {{{{ {match.group(1)} }}}}: {wrong}") from wrong
        except TemplateError as missing:
            raise TemplateError(f"{where}: {{{{ {match.group(1)} }}}}: {missing}") from missing

    notice = "<!-- generated by scripts/docs_pages.py from docs/templates/; edit the template -->"
    return notice + "\n" + PLACEHOLDER.sub(replace, template)


def cli_reference() -> str:
    """The command line: each command's usage and options, then every ``--set`` key."""
    from protofl.cli import build_parser
    from protofl.config import RunConfig

    parser = build_parser()
    parser.prog = "protofl"
    lines = [
        "<!-- generated by scripts/docs_pages.py from protofl's parser; do not edit -->",
        "# Command line reference",
        "",
        "Generated from the parser (`protofl.cli.build_parser`) and `protofl.RunConfig`.",
        "Settings are layered defaults < preset < `--set` < flags.",
        "",
    ]
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subparsers.choices.items():
        sub.prog = f"protofl {name}"
        # a fixed width: argparse otherwise follows the terminal, and the page must not
        # depend on who generated it
        sub.formatter_class = lambda prog: argparse.HelpFormatter(prog, width=88)
        help_text = sub.format_help()
        help_text = re.sub(r"\n\s*\n", "\n\n", help_text).strip()
        lines += [f"## protofl {name}", "", "```text", help_text, "```", ""]
    lines += [
        "## Settings (`--set KEY=VALUE`)",
        "",
        "Every field of `RunConfig`; an algorithm's options go under its name "
        "(`--set fpl.temperature=0.1`, see the algorithm pages).",
        "",
        "| key | type | default |",
        "|---|---|---|",
    ]
    defaults = RunConfig()
    for field in dataclasses.fields(RunConfig):
        if field.name == "algorithm_options":
            continue
        value = getattr(defaults, field.name)
        kind = str(field.type).replace("|", "or")
        lines.append(f"| `{field.name}` | `{kind}` | `{value!r}` |")
    return "\n".join(lines) + "\n"


def pages() -> dict[Path, str]:
    out: dict[Path, str] = {}
    for template in sorted(TEMPLATES.glob("*.md")):
        target = (
            ROOT / "README.md" if template.name == "README.md" else ROOT / "docs" / template.name
        )
        out[target] = render(template.read_text(), str(template.relative_to(ROOT)))
    out[ROOT / "docs" / "cli.md"] = cli_reference()
    return out


# Pictures the pages show, copied from the result folders that drew them.
PICTURES = {
    "robustness_embedded.png": "robustness_embedded/robustness.png",
    "robustness_office.png": "robustness_office_reduced/robustness.png",
}


def pictures() -> dict[Path, bytes]:
    return {
        ROOT / "docs" / page: (RESULTS / source).read_bytes() for page, source in PICTURES.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale pages")
    args = parser.parse_args(argv)
    stale = []
    wanted = {path: text.encode() for path, text in pages().items()} | pictures()
    for path, data in wanted.items():
        if path.is_file() and path.read_bytes() == data:
            continue
        stale.append(path.relative_to(ROOT))
        if not args.check:
            path.write_bytes(data)
    if args.check and stale:
        print("stale (run python scripts/docs_pages.py):", ", ".join(map(str, stale)))
        return 1
    for page in stale:
        print(f"wrote {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
