"""Attacks x defences x algorithms under domain shift: clean accuracy, accuracy under attack,
the backdoor's success rate, and what each defence costs every domain without an attack.

    python benchmarks/robustness_grid.py --out benchmarks/results/robustness_embedded \
        --algorithms fedavg,fpl --attacks none,label-flip,alie --defences mean,median,krum \
        --seeds 0 --jobs 2 -- --rounds 10 --local-epochs 1 --set threads=1

Each cell is an ordinary `protofl run` (one process; everything after `--` goes to each),
kept under `<out>/runs/<algorithm>-<attack>-<defence>-seed<S>/`: a finished run is not run
again and an interrupted one resumes, so the same command continues a grid. Combinations
that do not exist (prototype poisoning or the prototype defence for an algorithm that sends
no prototypes) are left out and listed. Writes `<out>/robustness.json` and `<out>/table.md`
(mean ± std over seeds of the last-5-round AVG, the accuracy on the honest clients' domains
is not separated from the liars': every domain's test split is scored) and, with matplotlib,
`<out>/robustness.png`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protofl.algorithms import ALGORITHMS
from protofl.outputs.compare import describe_machine

# Each defence as the settings that switch it on (the aggregation rules of
# protofl.federation.aggregation, and the prototype rule for the algorithms that send them).
DEFENCES: dict[str, tuple[str, ...]] = {
    "mean": (),
    "median": ("aggregation=median",),
    # 0.25 drops two values at each end of 8 or 10 clients, as many as the 20 % who lie; the
    # default 0.1 drops none of 8 (protofl refuses that) and one of 10.
    "trimmed-mean": ("aggregation=trimmed-mean", "trim_fraction=0.25"),
    "krum": ("aggregation=krum",),
    "multi-krum": ("aggregation=multi-krum",),
    "geometric-median": ("aggregation=geometric-median",),
    "rfa": ("aggregation=rfa",),
    "bulyan": ("aggregation=bulyan",),
    "norm-clip": ("aggregation=norm-clip",),
    "fltrust": ("aggregation=fltrust",),
    # a screen in front of any algorithm's own aggregation (FedHEAL's too): 3 x the round's
    # median distance from the global model, fixed before any run (not tuned on results)
    "distance-screen": ("distance_screen=3",),
    "prototype-median": ("prototype_aggregation=median",),
    "prototype-filter": ("prototype_aggregation=centre-filter",),
}
# "backdoor-probe": the backdoor's trigger and success rate with no client lying (the draw of
# round(1e-9 x K) clients is empty), i.e. how often a clean model already says the target
# class on triggered images: the baseline a backdoor's success rate is read against.
# The rules whose success rate the probe gives a baseline for: the mean, and the geometric
# median, whose backdoor success rate is twice the mean's (the probe asks whether its clean
# model is already readier to say the target class: on the embedded benchmark it is not).
PROBED_DEFENCES = {"mean", "geometric-median"}
PSEUDO_ATTACKS: dict[str, tuple[str, ...]] = {
    "backdoor-probe": ("attack=backdoor", "malicious_fraction=1e-9"),
}
PROTOTYPE_ONLY_ATTACKS = {"prototype-poison"}
PROTOTYPE_ONLY_DEFENCES = {"prototype-median", "prototype-filter"}
SCREENS = {"distance-screen"}  # before aggregation: every algorithm takes them


@dataclass(frozen=True)
class Cell:
    algorithm: str
    attack: str
    defence: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.algorithm}-{self.attack}-{self.defence}-seed{self.seed}"


def exists(cell: Cell) -> bool:
    """Whether the run is defined: prototype attacks and defences need an algorithm that
    sends prototypes, and a weight rule one that applies it (FedHEAL has its own); a screen
    stands in front of every algorithm."""
    if cell.attack in PSEUDO_ATTACKS and cell.defence not in PROBED_DEFENCES:
        return False  # a baseline for reading a success rate, not an attack to defend
    spec = ALGORITHMS.get(cell.algorithm)
    needs_prototypes = cell.attack in PROTOTYPE_ONLY_ATTACKS or cell.defence in (
        PROTOTYPE_ONLY_DEFENCES
    )
    weight_rule = cell.defence not in PROTOTYPE_ONLY_DEFENCES | SCREENS | {"mean"}
    if weight_rule and not spec.applies_weight_rule:
        return False
    return spec.sends_prototypes or not needs_prototypes


def cell_settings(cell: Cell, fraction: float) -> list[str]:
    """The ``key=value`` settings that make a run this cell."""
    settings = list(DEFENCES[cell.defence])
    if cell.attack in PSEUDO_ATTACKS:
        settings += PSEUDO_ATTACKS[cell.attack]
    elif cell.attack != "none":
        settings += [f"attack={cell.attack}", f"malicious_fraction={fraction}"]
    return settings


def stale(folder: Path, cell: Cell, fraction: float) -> str | None:
    """How a run's recorded config differs from what the grid now sets for its cell (a
    changed defence setting), or None. Such a run is neither counted nor resumed."""
    path = folder / "config.json"
    if not path.is_file():
        return None
    recorded = json.loads(path.read_text())
    for setting in cell_settings(cell, fraction):
        key, value = setting.split("=", 1)
        if key not in recorded:
            continue
        try:
            same = float(recorded[key]) == float(value)
        except (TypeError, ValueError):
            same = str(recorded[key]) == value
        if not same:
            return f"{key}={recorded[key]} where the grid now sets {value}"
    return None


def standing(folder: Path, cell: Cell, fraction: float) -> str:
    """``kept`` (finished with the cell's settings), ``stale (why)`` or ``not run``."""
    if not finished(folder):
        return "not run"
    why = stale(folder, cell, fraction)
    return "kept" if why is None else f"stale ({why})"


def command(cell: Cell, folder: Path, fraction: float, passthrough: Sequence[str]) -> list[str]:
    resumable = (folder / "checkpoint.pt").is_file() and not (folder / "summary.json").is_file()
    if resumable and stale(folder, cell, fraction) is None:
        return [sys.executable, "-m", "protofl", "run", "--resume", str(folder), "-q"]
    settings = cell_settings(cell, fraction)
    sets = [part for setting in settings for part in ("--set", setting)]
    return [
        sys.executable, "-m", "protofl", "run", "--algorithm", cell.algorithm,
        "--seed", str(cell.seed), "--out", str(folder), "-q", "--overwrite", *sets,
        *passthrough,
    ]  # fmt: skip


def finished(folder: Path) -> bool:
    return (folder / "summary.json").is_file()


def run_cell(cell: Cell, out: Path, fraction: float, passthrough: Sequence[str]) -> str:
    folder = out / "runs" / cell.name
    if standing(folder, cell, fraction) == "kept":
        return "kept"
    folder.parent.mkdir(parents=True, exist_ok=True)
    log = out / "logs" / f"{cell.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as stream:
        done = subprocess.run(command(cell, folder, fraction, passthrough), stdout=stream,
                              stderr=subprocess.STDOUT)  # fmt: skip
    return "finished" if done.returncode == 0 and finished(folder) else f"failed ({log})"


def last_rounds(folder: Path, key: str, window: int = 5) -> float | None:
    """Mean of ``key`` over the last ``window`` rounds of metrics.jsonl (None if absent)."""
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    values = [json.loads(line).get(key) for line in lines if line.strip()][-window:]
    values = [v for v in values if v is not None]
    return 100 * statistics.fmean(values) if values else None


def summarise(cells: list[Cell], out: Path, fraction: float = 0.2) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str, str], list[Path]] = {}
    for cell in cells:
        folder = out / "runs" / cell.name
        if standing(folder, cell, fraction) == "kept":
            groups.setdefault((cell.algorithm, cell.attack, cell.defence), []).append(folder)
    rows = []
    for (algorithm, attack, defence), folders in groups.items():
        summaries = [json.loads((f / "summary.json").read_text()) for f in folders]
        avg = [100 * s["last_5_rounds"]["mean_accuracy"] for s in summaries]
        domains = summaries[0]["last_5_rounds"]["per_domain_accuracy"]
        per_domain = {
            d: [100 * s["last_5_rounds"]["per_domain_accuracy"][d] for s in summaries]
            for d in domains
        }
        success = [last_rounds(f, "attack_success_rate") for f in folders]
        configs = [json.loads((f / "config.json").read_text()) for f in folders]
        seeds = [c["seed"] for c in configs]
        shares = [weight_shares(f, c) for f, c in zip(folders, configs, strict=True)]
        recorded = [s for s in shares if s is not None]
        rows.append({
            "algorithm": algorithm, "attack": attack, "defence": defence,
            "seeds": seeds,
            "avg": mean_std(avg), "per_domain": {d: mean_std(v) for d, v in per_domain.items()},
            "avg_by_seed": {str(s): a for s, a in zip(seeds, avg, strict=True)},
            "attack_success_rate": mean_std([s for s in success if s is not None]),
            "weight_share": {
                key: mean_std([s.get(key, 0.0) for s in recorded])
                for key in dict.fromkeys(k for s in recorded for k in s)
            } if recorded else None,
            "size_share": size_shares(configs[0]),
            "ran_on": sorted({where for c in configs for where in ran_on(c)}),
        })  # fmt: skip
    return rows


def domain_of(client: str, config: dict[str, Any]) -> str:
    """The client's domain as config.json records it; runs made before that record was kept
    fall back on the benchmark's naming, ``<domain>-<k>`` (data.partition)."""
    recorded = config.get("resolved", {}).get("client_domains") or {}
    return str(recorded[client]) if client in recorded else client.rsplit("-", 1)[0]


def ran_on(config: dict[str, Any]) -> list[str]:
    """Where each part of a run ran, as ``CPU (precision)`` (or the GPU's name): a table that
    gathers runs from several machines must say which ran where (bf16 and fp32 differ)."""
    parts = config.get("resolved", {}).get("parts", [])
    return [f"{p.get('gpu') or p.get('cpu', '?')} ({p.get('precision', '?')})" for p in parts]


def size_shares(config: dict[str, Any]) -> dict[str, float] | None:
    """Each domain's share of the training samples: its weight under the sample-weighted mean
    when every client takes part."""
    sizes = config.get("resolved", {}).get("client_sizes")
    if not sizes:
        return None
    total = sum(sizes.values())
    shares: dict[str, float] = {}
    for client, size in sizes.items():
        domain = domain_of(client, config)
        shares[domain] = shares.get(domain, 0.0) + 100 * size / total
    return shares


def weight_shares(folder: Path, config: dict[str, Any]) -> dict[str, float] | None:
    """Each domain's share (%) of the weight the server step gave its clients, and the liars'
    share (``malicious``), averaged over the rounds. Only server steps that give each client a
    weight record one (Krum, Multi-Krum, the geometric median and rfa, FedHEAL); the
    coordinate-wise rules and the plain mean record none, so this is None for them."""
    liars = set(config.get("resolved", {}).get("malicious_clients", []))
    rounds: list[dict[str, float]] = []
    for line in (folder / "metrics.jsonl").read_text().splitlines():
        step = json.loads(line).get("server_step") if line.strip() else None
        if not step or not all("weight" in v for v in step.values()):
            continue
        shares: dict[str, float] = {"malicious": 0.0}
        for client, values in step.items():
            domain = domain_of(client, config)
            shares[domain] = shares.get(domain, 0.0) + 100 * values["weight"]
            if client in liars:
                shares["malicious"] += 100 * values["weight"]
        rounds.append(shares)
    if not rounds:
        return None
    keys = dict.fromkeys(k for r in rounds for k in r)  # a domain absent from a round got 0
    return {k: statistics.fmean(r.get(k, 0.0) for r in rounds) for k in keys}


def mean_std(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "std": spread, "n": len(values)}


def text(value: dict[str, float] | None, full: int = 1) -> str:
    """``mean ± std``; a cell with fewer seeds than the table's fullest says how many."""
    if value is None:
        return "-"
    shown = (
        f"{value['mean']:.2f}" if value["n"] < 2 else f"{value['mean']:.2f} ± {value['std']:.2f}"
    )
    return shown if value["n"] >= full else f"{shown} (n={value['n']:.0f})"


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        f"AVG (%) over the last 5 rounds, mean ± std over seeds; malicious fraction "
        f"{meta['malicious_fraction']}. Command: `{meta['command']}`. Summarised on: "
        f"{meta['machine']}.",
        "",
    ]
    where: dict[str, int] = {}
    for summary in rows:
        for machine in summary.get("ran_on", []):
            where[machine] = where.get(machine, 0) + 1
    if where:
        listed = "; ".join(f"{m}: {n} cells" for m, n in sorted(where.items()))
        lines += [f"The runs ran on: {listed}.", ""]
    full = max((int(r["avg"]["n"]) for r in rows), default=1)
    if any(r["avg"]["n"] < full for r in rows):
        lines += [f"Cells marked (n=k) have k of the {full} seeds the others have.", ""]
    for algorithm in dict.fromkeys(r["algorithm"] for r in rows):
        mine = [r for r in rows if r["algorithm"] == algorithm]
        defences = list(dict.fromkeys(r["defence"] for r in mine))
        attacks = list(dict.fromkeys(r["attack"] for r in mine))
        lines += [f"## {algorithm}", "", "| attack | " + " | ".join(defences) + " |",
                  "|---|" + "---|" * len(defences)]  # fmt: skip
        found = {(r["attack"], r["defence"]): r for r in mine}
        for attack in attacks:
            cells = []
            for defence in defences:
                row = found.get((attack, defence))
                cell = text(row["avg"], full) if row else "-"
                if row and row["attack_success_rate"]:
                    cell += f" (ASR {text(row['attack_success_rate'])})"
                cells.append(cell)
            lines.append(f"| {attack} | " + " | ".join(cells) + " |")
        clean = [r for r in mine if r["attack"] == "none"]
        if clean:
            domains = list(clean[0]["per_domain"])
            lines += ["", "Without attack, per domain (what each defence costs each domain):",
                      "", "| defence | " + " | ".join(domains) + " | AVG |",
                      "|---|" + "---|" * (len(domains) + 1)]  # fmt: skip
            for row in clean:
                cells = [text(row["per_domain"][d]) for d in domains]
                lines.append(
                    f"| {row['defence']} | " + " | ".join(cells) + f" | {text(row['avg'], full)} |"
                )
        lines += listening(mine, full)
        lines.append("")
    return "\n".join(lines)


def listening(rows: list[dict[str, Any]], full: int) -> list[str]:
    """Who the server listened to: each domain's share of the weights where the rule records
    them, beside its share of the samples (what the sample-weighted mean gives it)."""
    weighed = [r for r in rows if r.get("weight_share")]
    if not weighed:
        return []
    domains = [k for k in weighed[0]["weight_share"] if k != "malicious"]
    lines = ["", "Share of the server's weight (%, mean over rounds) by domain, and the liars' "
             "(n=k: only k seeds' runs recorded it):",
             "", "| attack | defence | " + " | ".join(domains) + " | liars |",
             "|---|---|" + "---|" * (len(domains) + 1)]  # fmt: skip
    sizes = weighed[0].get("size_share")
    if sizes:
        cells = [f"{sizes.get(d, 0.0):.1f}" for d in domains]
        lines.append("| (samples) | mean | " + " | ".join(cells) + " | - |")
    for row in weighed:
        share = row["weight_share"]
        cells = [text(share.get(d), full) for d in domains]
        liars = text(share["malicious"], full) if row["attack"] != "none" else "-"
        lines.append(f"| {row['attack']} | {row['defence']} | " + " | ".join(cells)
                     + f" | {liars} |")  # fmt: skip
    return lines


def picture(rows: list[dict[str, Any]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    algorithms = list(dict.fromkeys(r["algorithm"] for r in rows))
    figure, axes = plt.subplots(1, len(algorithms), figsize=(5.5 * len(algorithms), 4.5),
                                squeeze=False)  # fmt: skip
    for axis, algorithm in zip(axes[0], algorithms, strict=True):
        mine = [r for r in rows if r["algorithm"] == algorithm]
        attacks = list(dict.fromkeys(r["attack"] for r in mine))
        defences = list(dict.fromkeys(r["defence"] for r in mine))
        grid = [[float("nan")] * len(defences) for _ in attacks]
        for r in mine:
            grid[attacks.index(r["attack"])][defences.index(r["defence"])] = r["avg"]["mean"]
        image = axis.imshow(grid, cmap="viridis", vmin=0, vmax=100)
        axis.set_xticks(range(len(defences)), defences, rotation=45, ha="right")
        axis.set_yticks(range(len(attacks)), attacks)
        for i, row in enumerate(grid):
            for j, value in enumerate(row):
                if value == value:  # not NaN
                    axis.text(j, i, f"{value:.0f}", ha="center", va="center", color="white")
        axis.set_title(f"{algorithm}: AVG (%)")
    figure.colorbar(image, ax=axes[0].tolist(), shrink=0.8)
    figure.savefig(path, dpi=110, bbox_inches="tight")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--algorithms", default="fedavg,fpl,fpl-fedheal")
    parser.add_argument("--attacks", default="none,label-flip,alie,noise,prototype-poison,backdoor")
    parser.add_argument(
        "--defences", default="mean,median,trimmed-mean,krum,geometric-median,prototype-median"
    )
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--malicious-fraction", type=float, default=0.2)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument(
        "--summarise-only", action="store_true", help="tabulate the finished runs, start none"
    )
    args = parser.parse_args(own)
    unknown = sorted(set(args.defences.split(",")) - set(DEFENCES))
    if unknown:
        parser.error(f"unknown defences {unknown}; known: {', '.join(DEFENCES)}")
    every = [
        Cell(a, attack, d, int(s))
        for a in args.algorithms.split(",")
        for attack in args.attacks.split(",")
        for d in args.defences.split(",")
        for s in args.seeds.split(",")
    ]
    cells = [c for c in every if exists(c)]
    started = time.perf_counter()
    if args.summarise_only:
        outcomes = [standing(args.out / "runs" / c.name, c, args.malicious_fraction) for c in cells]
    else:
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            outcomes = list(pool.map(
                lambda c: run_cell(c, args.out, args.malicious_fraction, passthrough), cells
            ))  # fmt: skip
    for cell, outcome in zip(cells, outcomes, strict=True):
        print(f"{cell.name}: {outcome}")
    meta = {
        "command": "python benchmarks/robustness_grid.py " + " ".join(argv),
        "machine": describe_machine(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "malicious_fraction": args.malicious_fraction,
        "wall_seconds": time.perf_counter() - started,
        "left_out": [c.name for c in every if not exists(c)],
        "failed": [c.name for c, o in zip(cells, outcomes, strict=True) if o.startswith("failed")],
        "not_run": [c.name for c, o in zip(cells, outcomes, strict=True) if o == "not run"],
        "stale": [c.name for c, o in zip(cells, outcomes, strict=True) if o.startswith("stale")],
    }
    rows = summarise(cells, args.out, args.malicious_fraction)
    args.out.mkdir(parents=True, exist_ok=True)  # --summarise-only of an empty or new folder
    (args.out / "robustness.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    table = markdown(rows, meta)
    (args.out / "table.md").write_text(table)
    picture(rows, args.out / "robustness.png")
    print(table)
    return 1 if meta["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
