"""Console output for the CLI: the resolved config, progress bars, the results table."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from protofl.config import RunConfig, list_presets, preset_summary
from protofl.core.records import RoundRecord
from protofl.outputs import results
from protofl.outputs.report_stats import METRICS, WINDOWS, comparison_text
from protofl.outputs.report_text import mean_std_text, paired_text, shortest_run, worst_text

if TYPE_CHECKING:  # the API pulls in torch and the data stack; the CLI loads it when needed
    from protofl.api import RunResult


class ProgressObserver:
    """Two bars (rounds, clients in the round) and a line per finished round."""

    def __init__(self, console: Console, clients: int | None) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.clients = clients
        self.rounds_task = self.progress.add_task("rounds", total=None)
        self.clients_task = self.progress.add_task("clients", total=clients)

    def __enter__(self) -> ProgressObserver:
        self.progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.progress.stop()

    def round_started(self, round_index: int, rounds: int) -> None:
        self.progress.update(self.rounds_task, total=rounds, completed=round_index - 1)
        self.progress.update(
            self.clients_task, completed=0, description=f"round {round_index} clients"
        )

    def client_finished(self, round_index: int, client_id: str) -> None:
        self.progress.advance(self.clients_task)

    def round_finished(self, record: RoundRecord) -> None:
        self.progress.update(self.rounds_task, completed=record.round)
        domains = "  ".join(f"{d} {a:.1%}" for d, a in record.per_domain_accuracy.items())
        loss = record.train.get("loss", float("nan"))
        pooled = "" if record.pooled_accuracy is None else f"  pooled {record.pooled_accuracy:6.1%}"
        if record.attack_success_rate is not None:  # attack=backdoor
            pooled += f"  attack success {record.attack_success_rate:6.1%}"
        self.progress.console.print(
            f"round {record.round:>3}  mean {record.mean_accuracy:6.1%}{pooled}  |  {domains}  |  "
            f"loss {loss:.3f}  ({record.train_seconds:.1f}s + {record.eval_seconds:.1f}s eval)",
            highlight=False,
            soft_wrap=True,
        )


def print_config(console: Console, config: RunConfig) -> None:
    shown = {k: v for k, v in config.to_dict().items() if v not in (None, {}, ())}
    settings = "  ".join(f"{k}={v}" for k, v in shown.items())
    console.print(f"[bold]protofl run[/] {settings}", highlight=False, soft_wrap=True)


def print_results(console: Console, result: RunResult) -> None:
    summary = result.summary
    last = summary["last_5_rounds"]
    table = Table(title=f"accuracy after round {summary['rounds']}")
    table.add_column("domain")
    table.add_column("final", justify="right")
    table.add_column(results.window_text(summary["rounds"]), justify="right")
    for domain, accuracy in summary["per_domain_accuracy"].items():
        table.add_row(domain, f"{accuracy:.2%}", f"{last['per_domain_accuracy'][domain]:.2%}")
    table.add_row(
        "[bold]mean[/]",
        f"[bold]{summary['mean_accuracy']:.2%}[/]",
        f"[bold]{last['mean_accuracy']:.2%}[/]",
    )
    for name, key in (("std across domains", "domain_std"), ("pooled", "pooled_accuracy")):
        table.add_row(name, _percent(summary[key]), _percent(last[key]))
    table.add_row("worst domain", *(_worst(s["worst_domain"]) for s in (summary, last)))
    if "attack_success_rate" in summary:  # attack=backdoor
        table.add_row(
            "attack success (backdoor)",
            *(_percent(s["attack_success_rate"]) for s in (summary, last)),
        )
    console.print(table)
    if result.out_dir is not None:
        console.print(f"results: {result.out_dir}/ ({', '.join(run_files(result.out_dir))})")


def _percent(value: float | None) -> str:
    return "missing" if value is None else f"{value:.2%}"


def _worst(worst: dict[str, Any]) -> str:
    return f"{worst['accuracy']:.2%} ({worst['domain']})"


def print_comparison(console: Console, report: dict[str, Any], out: Path) -> None:
    """The comparison table (last-5-round accuracy, mean ± std over seeds), then with a
    baseline the paired statistics per window."""
    columns = [*report["domains"], "AVG"]
    window = results.window_text(shortest_run(report))
    table = Table(title=f"{report['meta']['benchmark']}: accuracy (%), {window}")
    table.add_column("algorithm")
    for column in columns:
        table.add_column(column, justify="right")
    table.add_column("seeds")
    baseline = report.get("baseline")
    if baseline:
        table.add_column(f"vs {baseline}, paired")
    for algorithm, row in report["rows"].items():
        cells = [mean_std_text(row[c]) for c in columns]
        extra = [paired_text(row.get("paired"))] if baseline else []
        table.add_row(algorithm, *cells, ",".join(map(str, row["seeds"])), *extra)
    console.print(table)
    fairness = Table(title=f"across domains (%), {window}")
    for column in ("algorithm", "AVG", "std across domains", "worst domain", "pooled"):
        fairness.add_column(column, justify="left" if column == "algorithm" else "right")
    for algorithm, row in report["rows"].items():
        cells = [mean_std_text(row[c]) for c in ("AVG", "domain_std")]
        fairness.add_row(algorithm, *cells, worst_text(row), mean_std_text(row["pooled"]))
    console.print(fairness)
    for metric, title in METRICS.items() if baseline else ():
        paired = Table(title=f"{title} minus {baseline}'s, paired over seeds")
        paired.add_column("algorithm")
        for size in WINDOWS:
            paired.add_column(f"last {size} rounds")
        for algorithm, row in report["rows"].items():
            if "paired_statistics" in row:
                entries = row["paired_statistics"][metric]
                texts = [comparison_text(entries[f"last_{w}"]) for w in WINDOWS]
                paired.add_row(algorithm, *texts)
        console.print(paired)
    console.print(f"written: {out}/ (table.md, results.json, plots)")


def print_leave_one_out(console: Console, written: dict[str, Any], out: Path) -> None:
    """The leave-one-domain-out table: rows methods, columns held-out domain and mean."""
    lodo = written["leave_one_domain_out"]
    columns = [*lodo["held_out"], "mean"]
    benchmark = written["meta"]["benchmark"]
    table = Table(title=f"{benchmark}, leave one domain out: accuracy (%) on the held-out domain")
    table.add_column("algorithm")
    for column in columns:
        table.add_column(column, justify="right")
    table.add_column("seeds")
    for algorithm, row in lodo["rows"].items():
        cells = [mean_std_text(row[c]) for c in columns]
        table.add_row(algorithm, *cells, ",".join(map(str, row["seeds"])))
    console.print(table)
    console.print(lodo["note"], highlight=False)
    console.print(f"written: {out}/ (table.md, results.json; holdout-<domain>/ per domain)")


def print_listing(console: Console) -> None:
    from protofl.algorithms import ALGORITHMS
    from protofl.data.benchmarks import BENCHMARKS
    from protofl.models import MODEL_SUMMARIES, MODELS

    table = Table(title="protofl")
    table.add_column("kind")
    table.add_column("name")
    table.add_column("what")
    for name in ALGORITHMS:
        table.add_row("algorithm", name, ALGORITHMS.get(name).summary)
    for name in BENCHMARKS:
        spec = BENCHMARKS.get(name)
        domains = f"; domains {', '.join(spec.domains)}" if spec.domains else ""
        source = f"; source: {spec.source}" if spec.source else ""
        table.add_row("benchmark", name, f"{spec.summary}{domains}{source}")
    for name in MODELS:
        table.add_row("model", name, MODEL_SUMMARIES.get(name, ""))
    for name in list_presets():
        table.add_row("preset", name, preset_summary(name))
    console.print(table)


def run_files(folder: Path) -> list[str]:
    """What a run folder holds, as a user would look for it (checkpoint, TensorBoard and
    clients.png included when the run wrote them)."""
    names = ["config.json", "metrics.jsonl", "summary.json", "checkpoint.pt", "clients.png"]
    shown = [name for name in names if (folder / name).exists()]
    if (folder / "tensorboard").is_dir():
        shown.append("tensorboard/")
    return shown
