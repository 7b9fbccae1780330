"""Tables and plots from finished run folders, whoever made them: one ``protofl compare``
call, separate ``protofl run`` commands, other sessions or machines.

Runs are grouped by algorithm; a group pools its seeds only when every setting that decides
what a run computes agrees (the selected algorithm's options included), and otherwise the
report is refused with the keys that differ. How a run executed (output folder, threads,
data folder, device) and the precision may differ; the precisions and commits that produced
each row are listed under the table. The table is the paper's layout: per-domain top-1
accuracy and AVG, each the mean over a run's last five rounds, then mean ± std over seeds;
then the spread across domains, the worst domain and the pooled accuracy, and with a
baseline the paired statistics (:mod:`protofl.outputs.report_stats`). The text of
``table.md`` is written by :mod:`protofl.outputs.report_text`.
"""

from __future__ import annotations

import json
import logging
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from protofl.errors import ConfigError, DataError
from protofl.outputs import report_stats, report_text, results

logger = logging.getLogger(__name__)

LAST = results.LAST_ROUNDS
# Settings that say how or where a run executed, not what it computed. The evaluation batch
# size is one: the model is scored in inference mode, each image on its own, so the batch
# size moves only the last bits of a logit, as the thread count does
# (benchmarks/eval_batch.py counts the predictions it changes).
EXECUTION = frozenset(
    {
        "out",
        "threads",
        "data_dir",
        "cache_dir",
        "device",
        "precision",
        "download",
        "compile",
        "eval_batch_size",
    }
)


@dataclass(frozen=True)
class FinishedRun:
    """A finished run folder: its saved config and its per-round records."""

    folder: Path
    config: dict[str, Any]
    history: list[dict[str, Any]]

    @staticmethod
    def load(folder: Path) -> FinishedRun:
        config_path, summary_path = folder / "config.json", folder / "summary.json"
        if not config_path.is_file():
            raise ConfigError(f"{str(folder)!r} holds no config.json; it is not a protofl run.")
        config = json.loads(config_path.read_text())
        if not summary_path.is_file():
            raise ConfigError(
                f"{str(folder)!r} has not finished (no summary.json); finish it with "
                f"protofl run --resume {folder}"
            )
        lines = (folder / "metrics.jsonl").read_text().splitlines()
        history = [json.loads(line) for line in lines if line.strip()]
        if len(history) != config["rounds"]:
            raise ConfigError(
                f"{str(folder)!r} holds {len(history)} of its {config['rounds']} rounds."
            )
        return FinishedRun(folder, config, history)

    @property
    def algorithm(self) -> str:
        return str(self.config["algorithm"])

    @property
    def seed(self) -> int:
        return int(self.config["seed"])

    def experiment(self) -> dict[str, Any]:
        """What decides the numbers: every setting but the seed and the execution ones, with
        only the selected algorithm's options. Read through today's ``RunConfig``, so a run
        saved before a setting existed counts as having its default."""
        from protofl.config import config_from_dict

        full = config_from_dict(self.config).to_dict()
        options = full["algorithm_options"].get(self.algorithm, {})
        kept = {k: v for k, v in full.items() if k not in EXECUTION | {"seed", "algorithm_options"}}
        return {**kept, "options": options}

    def changed_options(self) -> dict[str, Any]:
        """The algorithm's options that differ from protofl's defaults (a variant's mark)."""
        from protofl.algorithms import ALGORITHMS

        if self.algorithm not in ALGORITHMS.names():
            return {}
        defaults = asdict(ALGORITHMS.get(self.algorithm).make_config({}))
        options = self.experiment()["options"]
        return {k: v for k, v in options.items() if k in defaults and defaults[k] != v}

    @property
    def test_sizes(self) -> dict[str, int] | None:
        """Test samples per domain, where the run recorded them."""
        sizes = self.config.get("resolved", {}).get("test_sizes")
        return None if sizes is None else {d: int(n) for d, n in sizes.items()}

    def facts(self) -> dict[str, Any]:
        """The precision and commit behind the run; a resumed run lists each part's
        (``fp32+fp64``) from config.json's ``resolved.parts`` where it recorded them."""
        resolved = self.config.get("resolved", {})
        produced = resolved.get("produced_by", {})
        parts = resolved.get("parts") or [
            {"precision": resolved.get("precision"), "commit": produced.get("commit")}
        ]
        precisions = list(dict.fromkeys(str(p.get("precision") or "?") for p in parts))
        commits = list(dict.fromkeys(str(p["commit"]) for p in parts if p.get("commit")))
        return {
            "precision": "+".join(precisions) if precisions != ["?"] else None,
            "commit": "+".join(commits) or None,
            "parts": len(parts),
        }


def group_runs(runs: Sequence[FinishedRun]) -> dict[str, list[FinishedRun]]:
    """Runs by algorithm (in the registry's order), seeds sorted; refuses to pool runs whose
    settings differ, or two runs of one algorithm with the same seed."""
    from protofl.algorithms import ALGORITHMS  # the registry's order: the paper's, then ours

    order = {name: index for index, name in enumerate(ALGORITHMS.names())}
    groups: dict[str, list[FinishedRun]] = {}
    for run in sorted(runs, key=lambda r: order.get(r.algorithm, len(order))):
        groups.setdefault(run.algorithm, []).append(run)
    for name, members in groups.items():
        first = members[0].experiment()
        for other in members[1:]:
            theirs = other.experiment()
            differ = sorted(
                k for k in first.keys() | theirs.keys() if first.get(k) != theirs.get(k)
            )
            if differ:
                raise ConfigError(
                    f"cannot pool {name} runs {members[0].folder} and {other.folder}: their "
                    f"settings differ in {', '.join(differ)}. Report them separately."
                )
        seeds = [m.seed for m in members]
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"{name}: two runs with the same seed among {seeds}.")
        members.sort(key=lambda m: m.seed)
    _check_one_protocol([m for ms in groups.values() for m in ms])
    return groups


def _check_one_protocol(runs: Sequence[FinishedRun]) -> None:
    """Rows of one table must share the protocol (benchmark, rounds, epochs, data, ...):
    only the algorithm and its options may differ between rows."""

    def protocol(run: FinishedRun) -> dict[str, Any]:
        return {k: v for k, v in run.experiment().items() if k not in ("algorithm", "options")}

    first = protocol(runs[0])
    for other in runs[1:]:
        theirs = protocol(other)
        differ = sorted(k for k in first if first[k] != theirs.get(k))
        if differ:
            raise ConfigError(
                f"{runs[0].folder} and {other.folder} ran different protocols ({', '.join(differ)} "
                "differ); a table compares algorithms under one protocol. Report them separately."
            )


def tabulate(
    groups: Mapping[str, Sequence[FinishedRun]], baseline: str | None = None
) -> dict[str, Any]:
    """Per algorithm: per-domain and AVG (%), mean and std over seeds of each run's mean over
    its last five rounds; a ``(personalised)`` row for algorithms with local layers. With a
    ``baseline`` algorithm, each other row also gets its paired AVG differences (seed by seed:
    one seed fixes the data split and the initial model for every algorithm)."""
    rows: dict[str, Any] = {}
    domains: list[str] = []
    for name, members in groups.items():
        domains = members[0].config["resolved"]["domains"]  # the benchmark's order
        histories = {m.seed: m.history for m in members}
        sizes = {m.seed: m.test_sizes for m in members}
        rows[name] = _row(histories, sizes, domains, "per_domain_accuracy", "mean_accuracy")
        rows[name]["facts"] = [m.facts() for m in members]
        rows[name]["changed_options"] = members[0].changed_options()  # pooled runs agree
        if all(h[-1].get("personal_accuracy") for h in histories.values()):
            personal = _row(
                histories, sizes, domains, "personal_accuracy", "personal_mean_accuracy"
            )
            rows[f"{name} (personalised)"] = {**personal, "facts": rows[name]["facts"]}
    seeds = sorted({m.seed for ms in groups.values() for m in ms})
    table = {"domains": domains, "rows": rows, "seeds": seeds}
    if baseline is not None:
        if baseline not in groups:
            raise ConfigError(
                f"baseline {baseline!r} is not among the reported algorithms ({', '.join(groups)})."
            )
        table["baseline"] = baseline
        for name, row in rows.items():
            if name != baseline and not name.endswith("(personalised)"):
                row["paired"] = paired_differences(row, rows[baseline])
                row["paired_statistics"] = report_stats.paired_statistics(row, rows[baseline])
    return table


def paired_differences(row: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
    """AVG of ``row`` minus AVG of ``base`` for every seed both ran (points)."""
    common = [seed for seed in row["seeds"] if seed in base["seeds"]]
    ours = dict(zip(row["seeds"], row["per_seed_avg"], strict=True))
    theirs = dict(zip(base["seeds"], base["per_seed_avg"], strict=True))
    differences = [ours[seed] - theirs[seed] for seed in common]
    return {
        "seeds": common,
        "differences": differences,
        "mean": statistics.fmean(differences) if differences else None,
        "ahead": sum(d > 0 for d in differences),
    }


def _row(
    histories: Mapping[int, list[dict[str, Any]]],
    sizes: Mapping[int, dict[str, int] | None],
    domains: list[str],
    per_domain: str,
    mean: str,
) -> dict[str, Any]:
    per_seed = []
    for history in histories.values():
        tail = history[-LAST:]
        scores = {d: 100 * statistics.fmean(r[per_domain][d] for r in tail) for d in domains}
        scores["AVG"] = statistics.fmean(scores[d] for d in domains)
        per_seed.append(scores)
    row: dict[str, Any] = {c: _mean_std([s[c] for s in per_seed]) for c in [*domains, "AVG"]}
    row["seeds"] = list(histories)
    row["per_seed_avg"] = [scores["AVG"] for scores in per_seed]
    row["curves"] = {str(seed): [100 * r[mean] for r in h] for seed, h in histories.items()}
    row.update(report_stats.fairness_columns(histories, sizes, domains, per_domain, LAST))
    row.update(at_best_validation(histories, mean))
    if per_domain == "per_domain_accuracy":
        row.update(holdout_columns(histories))
        row.update(report_stats.attack_columns(histories, LAST))
    return row


def holdout_columns(histories: Mapping[int, list[dict[str, Any]]]) -> dict[str, Any]:
    """Accuracy (%) on the held-out domains no client holds, each seed's mean over its last
    rounds, then mean ± std over seeds; nothing when the runs held no domain out."""
    per_seed = []
    for history in histories.values():
        tail = [r["holdout_accuracy"] for r in history[-LAST:] if r.get("holdout_accuracy")]
        if not tail:
            return {}
        scores = {d: 100 * statistics.fmean(t[d] for t in tail) for d in tail[-1]}
        scores["AVG"] = statistics.fmean(scores.values())
        per_seed.append(scores)
    return {"holdout": {c: _mean_std([s[c] for s in per_seed]) for c in per_seed[0]}}


def at_best_validation(histories: Mapping[int, list[dict[str, Any]]], mean: str) -> dict[str, Any]:
    """The test AVG (%) of each seed at its round of best validation AVG (the first such
    round), mean ± std over seeds, and those rounds; nothing when a run has no validation
    split. This is the figure to compare methods by: chosen without looking at the test set."""
    best_rounds, scores = [], []
    for history in histories.values():
        scored = [r for r in history if r.get("validation_mean_accuracy") is not None]
        if not scored:
            return {}
        best = max(scored, key=lambda r: r["validation_mean_accuracy"])  # first of ties
        best_rounds.append(best["round"])
        scores.append(100 * best[mean])
    return {"at_best_validation": _mean_std(scores), "best_validation_rounds": best_rounds}


_mean_std = report_stats.mean_std


def find_runs(paths: Sequence[Path], skipped: list[Path] | None = None) -> list[FinishedRun]:
    """Each path is a run folder, or a folder of them (a compare output's ``runs/``, or its
    parent). A run folder named directly must have finished; unfinished runs found inside a
    folder of runs (a grid still running) are left out and listed in ``skipped`` when given,
    else refused."""
    named: list[Path] = []
    listed: list[Path] = []
    for path in paths:
        if (path / "config.json").is_file():
            named.append(path)
        elif (path / "runs").is_dir():
            listed += sorted(p for p in (path / "runs").iterdir() if (p / "config.json").is_file())
        elif path.is_dir() and any((p / "config.json").is_file() for p in path.iterdir()):
            listed += sorted(p for p in path.iterdir() if (p / "config.json").is_file())
        else:
            raise ConfigError(f"{str(path)!r} is neither a run folder nor a folder of runs.")
    if not named and not listed:
        raise ConfigError("no run folders given.")
    runs = [FinishedRun.load(folder) for folder in named]
    for folder in listed:
        try:
            runs.append(FinishedRun.load(folder))
        except ConfigError:
            if skipped is None:
                raise
            skipped.append(folder)
    if not runs:
        raise ConfigError(f"none of the {len(listed)} runs found has finished yet.")
    return runs


def write_report(
    groups: Mapping[str, Sequence[FinishedRun]],
    out: Path,
    meta: Mapping[str, Any],
    plots: bool = True,
    baseline: str | None = None,
) -> dict[str, Any]:
    """``table.md``, ``results.json`` and (with matplotlib) the plots, into ``out``."""
    table = tabulate(groups, baseline)  # before anything is written: a bad baseline fails
    out.mkdir(parents=True, exist_ok=True)
    first = next(iter(groups.values()))[0]
    meta = {"benchmark": first.config["benchmark"], **meta}
    (out / "table.md").write_text(report_text.markdown_table(table, meta))
    serialisable = {
        "meta": dict(meta),
        **table,
        "runs": {n: [str(m.folder) for m in ms] for n, ms in groups.items()},
    }
    results.write_json(out / "results.json", serialisable)
    if plots:
        from protofl.outputs import plots as plotting

        plotting.accuracy_per_round(table, out / "accuracy_per_round.png", meta)
        plotting.per_domain(table, out / "per_domain.png", meta)
        fpl = [m for m in groups.get("fpl", []) if (m.folder / "checkpoint.pt").exists()]
        if fpl:
            try:
                plotting.feature_space(fpl[0].folder, out / "features.png")
            except DataError as err:  # a run of users' own arrays cannot be rebuilt here
                logger.warning("no features.png: %s", err)
    return {"meta": dict(meta), **table}
