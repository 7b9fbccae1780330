"""Run a comparison grid as parallel processes, each one `protofl compare` of one
(algorithm, seed), into one results folder; stop cleanly at a deadline.

Written for a lent GPU machine (16 cores, one large GPU, minutes of device time): many
small runs share the GPU at once, the grid runs in the order given (most wanted first), and
whatever has not finished by the deadline is stopped with its last checkpoint kept, so the
same command later resumes it. It works the same on a CPU (`--jobs 2 -- --set threads=1`).

    python benchmarks/parallel_grid.py --algorithms fpl-fedheal,fpl,fedproto --seeds 0,1,2 \
        --jobs 9 --deadline-minutes 8 --out office_paper_protocol --archive results.tgz \
        -- --preset paper-office --data-dir data --set threads=1

Everything after `--` goes to every `protofl compare`. Writes `<out>/parallel_runs.json`
(each job's status, wall time, rounds done, last AVG; the machine and the command; earlier
grids into the same folder kept under `earlier_grids`), prints
a table, rebuilds `<out>/table.md` with `protofl report`, and with `--archive` packs the
run folders (without checkpoints) and the logs into one .tgz.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Job:
    algorithm: str
    seed: int
    status: str = "waiting"  # waiting, running, finished, failed, stopped (resumable)
    returncode: int | None = None
    wall_seconds: float | None = None
    rounds_done: int = 0
    last_avg: float | None = None
    started: float = field(default=0.0, repr=False)

    @property
    def name(self) -> str:
        return f"{self.algorithm}-seed{self.seed}"


def command_for(job: Job, out: Path, passthrough: list[str]) -> list[str]:
    return [
        sys.executable, "-m", "protofl", "compare", "--algorithms", job.algorithm,
        "--seeds", str(job.seed), "--out", str(out), "-q", *passthrough,
    ]  # fmt: skip


def read_progress(run_dir: Path) -> tuple[int, float | None]:
    """Rounds recorded so far and the last round's mean accuracy (None before round 1)."""
    metrics = run_dir / "metrics.jsonl"
    if not metrics.exists():
        return 0, None
    lines = [line for line in metrics.read_text().splitlines() if line.strip()]
    if not lines:
        return 0, None
    return len(lines), 100.0 * float(json.loads(lines[-1])["mean_accuracy"])


def job_progress(out: Path, name: str) -> tuple[int, float | None]:
    """A job's rounds over its run folders (one, or one per held-out domain with
    ``--holdout each``: ``<out>/holdout-<domain>/runs/<name>``) and its last AVG."""
    rounds, last = 0, None
    for folder in sorted(out.glob(f"**/runs/{name}")):
        done, avg = read_progress(folder)
        rounds, last = rounds + done, avg if avg is not None else last
    return rounds, last


def stop(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGINT first (the run writes nothing half: checkpoints are atomic), then kill."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def run_grid(jobs: list[Job], out: Path, passthrough: list[str], parallel: int,
             deadline: float, poll: float = 2.0) -> None:  # fmt: skip
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    waiting = list(jobs)
    running: dict[str, tuple[Job, subprocess.Popen[bytes]]] = {}
    while waiting or running:
        while waiting and len(running) < parallel and time.monotonic() < deadline:
            job = waiting.pop(0)
            with (logs / f"{job.name}.log").open("wb") as log:  # the child keeps its own copy
                process = subprocess.Popen(command_for(job, out, passthrough), stdout=log,
                                           stderr=subprocess.STDOUT)  # fmt: skip
            job.status, job.started = "running", time.monotonic()
            running[job.name] = (job, process)
            print(f"started {job.name} (pid {process.pid})", flush=True)
        if time.monotonic() >= deadline:
            for job in waiting:
                job.status = "not started"
            waiting.clear()
            for job, process in running.values():
                if process.poll() is None:  # one that ended just now keeps its own status
                    stop(process, grace=30.0)
                    job.status = "stopped (resumable)"
        for name, (job, process) in list(running.items()):
            if process.poll() is None:
                continue
            job.wall_seconds = round(time.monotonic() - job.started, 1)
            job.returncode = process.returncode
            if job.status == "running":
                job.status = "finished" if process.returncode == 0 else "failed"
            job.rounds_done, job.last_avg = job_progress(out, job.name)
            del running[name]
            print(f"{job.status}: {job.name} after {job.wall_seconds} s", flush=True)
        time.sleep(poll if running else 0)


def print_table(jobs: list[Job]) -> None:
    print(f"\n{'run':<28} {'status':<20} {'wall s':>8} {'rounds':>6} {'last AVG':>8}")
    for job in jobs:
        wall = f"{job.wall_seconds:.0f}" if job.wall_seconds is not None else "-"
        avg = f"{job.last_avg:.2f}" if job.last_avg is not None else "-"
        print(f"{job.name:<28} {job.status:<20} {wall:>8} {job.rounds_done:>6} {avg:>8}")


def machine() -> dict[str, object]:
    facts: dict[str, object] = {"cpu_cores": os.cpu_count(), "python": platform.python_version()}
    try:
        import torch

        facts["torch"] = torch.__version__
        if torch.cuda.is_available():
            facts["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return facts


def archive(out: Path, target: Path) -> None:
    """The run folders and logs without checkpoints: small enough to bring back."""
    with tarfile.open(target, "w:gz") as tar:
        for path in sorted(out.rglob("*")):
            if path.is_file() and not path.name.startswith(("checkpoint", ".protofl")):
                tar.add(path, arcname=str(path.relative_to(out.parent)))


def keep_earlier_grids(path: Path, record: dict[str, object]) -> dict[str, object]:
    """``record`` with the records of earlier grids into the same folder under
    ``earlier_grids`` (oldest first): their runs share the folder's table, so their timings
    stay beside it rather than being overwritten."""
    if not path.is_file():
        return record
    try:
        previous = json.loads(path.read_text())
    except json.JSONDecodeError:
        return record  # not ours to repair; the new record still gets written
    if not isinstance(previous, dict):
        return record
    earlier = previous.pop("earlier_grids", [])
    return {**record, "earlier_grids": [*earlier, previous]}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    passthrough = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algorithms", required=True, help="comma-separated, most wanted first")
    parser.add_argument("--seeds", required=True, help="comma-separated")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--jobs", type=int, default=2, help="processes at once")
    parser.add_argument("--deadline-minutes", type=float, default=None)
    parser.add_argument(
        "--order",
        choices=["seed", "algorithm"],
        default="seed",
        help="seed: every algorithm's seed 0 first; algorithm: all of one first",
    )
    parser.add_argument("--archive", type=Path, default=None, help="write a .tgz of the results")
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args(own)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    algorithms = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    pairs = ([(a, s) for s in seeds for a in algorithms] if args.order == "seed"
             else [(a, s) for a in algorithms for s in seeds])  # fmt: skip
    jobs = [Job(a, s) for a, s in pairs]
    minutes = args.deadline_minutes
    deadline = time.monotonic() + (minutes * 60 if minutes is not None else float("inf"))
    began = time.monotonic()
    run_grid(jobs, args.out, passthrough, args.jobs, deadline)
    print_table(jobs)
    record = {
        "command": "python benchmarks/parallel_grid.py " + " ".join(argv),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "jobs_at_once": args.jobs,
        "grid_wall_seconds": round(time.monotonic() - began, 1),
        "runs": [{k: v for k, v in asdict(j).items() if k != "started"} for j in jobs],
    }
    path = args.out / "parallel_runs.json"
    path.write_text(json.dumps(keep_earlier_grids(path, record), indent=2) + "\n")
    if not args.no_report and any(j.status == "finished" for j in jobs):
        report = [sys.executable, "-m", "protofl", "report", str(args.out), "--out", str(args.out)]
        subprocess.run(report, check=False)
    if args.archive is not None:
        archive(args.out, args.archive)
    return 0 if all(j.status == "finished" for j in jobs) else 1


if __name__ == "__main__":
    sys.exit(main())
