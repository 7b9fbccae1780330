"""The one writer of a run's folder, used by the simulator (new and resumed runs) and the
Flower server alike: ``config.json`` at the start (with what produced the run: protofl's
version and commit), a line of ``metrics.jsonl`` per round, ``summary.json`` at the end."""

from __future__ import annotations

import datetime
import fcntl
import json
import logging
import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from protofl import __version__
from protofl.config import RunConfig, dumps
from protofl.core.payloads import domain_id
from protofl.core.records import RoundRecord
from protofl.errors import ConfigError
from protofl.outputs import results
from protofl.outputs.checkpoint import Snapshot, save_snapshot

if TYPE_CHECKING:
    from protofl.outputs.tracking import TensorBoardLog

logger = logging.getLogger(__name__)


LOCK = ".protofl.lock"  # held by the one process writing a run folder
HOLDER = "protofl process"  # the lock file's text: "protofl process <pid>"


def lock_holder_pid(lock: Path) -> int | None:
    """The pid written in a run folder's lock file, or None (absent, empty, unreadable)."""
    try:
        words = lock.read_text().split()
    except OSError:
        return None
    return int(words[-1]) if words and words[-1].isdigit() else None


class RunFolder:
    """A run's output folder, locked against a second writer while this one is open."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock: IO[str] | None = None
        self.board: TensorBoardLog | None = None
        self.lock()

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def round_done(self, snapshot: Snapshot) -> None:
        """After every round: its line in metrics.jsonl, the checkpoint, TensorBoard."""
        self.record(snapshot.history[-1])
        save_snapshot(self.path, snapshot)
        if self.board is not None:
            self.board.write_round(snapshot.history[-1], snapshot.state)

    def lock(self) -> None:
        """Take the folder's lock; a second process gets a clear error instead of
        interleaving its rounds with ours (the lock goes with the process if it dies)."""
        handle = (self.path / LOCK).open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise ConfigError(self._refusal()) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{HOLDER} {os.getpid()}\n")
        handle.flush()
        self._lock = handle

    def _refusal(self) -> str:
        pid = lock_holder_pid(self.path / LOCK)
        if pid is None:
            return (
                f"{str(self.path)!r} is being written by another process. Wait for it to "
                "finish, or choose another --out; two runs in one folder would mix their results."
            )
        return (
            f"{str(self.path)!r} is being written by protofl process {pid}. Wait for it to "
            f"finish, or end it (kill {pid}) if it should not run: a Flower ServerApp whose "
            "SuperLink was killed keeps running for a while and holds its run folder. "
            "Or choose another --out; two runs in one folder would mix their results."
        )

    def close(self) -> None:
        if self.board is not None:
            self.board.close()
            self.board = None
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    @classmethod
    def create(
        cls,
        config: RunConfig,
        resolved: Mapping[str, Any],
        overwrite: bool = False,
        kind: str = "",
    ) -> RunFolder:
        """Make ``config.out`` (default ``runs/<algorithm>-<benchmark>[-kind]-<time>``), refuse
        one holding results unless ``overwrite``, and write ``config.json``."""
        path = results.prepare_out_dir(Path(config.out or default_out(config, kind)), overwrite)
        folder = cls(path)  # locked before anything is written
        part = run_part(resolved, first_round=1, threads=config.threads)
        facts = {**resolved, "produced_by": provenance(), "parts": [part]}
        (path / "config.json").write_text(dumps(config, {"resolved": facts}) + "\n")
        logger.info("writing results to %s", path.resolve())
        counts = resolved.get("client_class_counts")
        if config.label_skew > 0 and counts:
            folder.draw_clients(counts, config.label_skew)
        return folder

    def draw_clients(self, counts: Mapping[str, list[int]], alpha: float) -> None:
        """``clients.png``: each client's class histogram (optional: needs matplotlib)."""
        try:
            from protofl.outputs import plots

            plots.client_classes(counts, self.path / "clients.png", f"label_skew = {alpha}")
        except ConfigError as err:  # matplotlib missing: the counts are in config.json
            logger.warning("no clients.png: %s", err)

    def start_tensorboard(
        self, config: RunConfig, num_classes: int, domains: Sequence[str]
    ) -> None:
        """Log the rounds to TensorBoard too when ``config.tensorboard`` is on."""
        if config.tensorboard:
            self.board = self._tensorboard(config, num_classes, domains)

    def _tensorboard(
        self, config: RunConfig, num_classes: int, domains: Sequence[str]
    ) -> TensorBoardLog:
        from protofl.outputs.tracking import TensorBoardLog

        names = {domain_id(d): d for d in domains}
        return TensorBoardLog(
            self.path, num_classes, names, f"{config.algorithm}-seed{config.seed}"
        )

    def record(self, record: RoundRecord) -> None:
        results.append_round(self.path, record)

    def add_part(self, resolved: Mapping[str, Any], first_round: int, threads: int) -> None:
        """On resume: append what runs this part (from ``first_round`` on) to config.json's
        ``resolved.parts``, and warn when its device or precision differ from the part
        before: the numbers and random streams then differ from an uninterrupted run."""
        path = self.path / "config.json"
        stored = json.loads(path.read_text())
        facts = stored.setdefault("resolved", {})
        parts = facts.setdefault("parts", [])
        before = parts[-1] if parts else facts  # a run from before parts were recorded
        part = run_part(resolved, first_round, threads)
        for key in ("device", "precision"):
            if before.get(key) is not None and before.get(key) != part[key]:
                logger.warning(
                    "%s: rounds from %d on run with %s %s, the rounds before with %s: the "
                    "numbers (and on another device the random streams) differ from an "
                    "uninterrupted run; config.json records each part.",
                    self.path,
                    first_round,
                    key,
                    part[key],
                    before[key],
                )
        parts.append(part)
        results.write_json(path, stored)

    def rewrite(self, history: Sequence[RoundRecord]) -> None:
        """On resume: keep exactly the rounds the checkpoint holds."""
        results.rewrite_rounds(self.path, history)

    def finish(self, summary: Mapping[str, Any]) -> None:
        results.write_json(self.path / "summary.json", dict(summary))


def default_out(config: RunConfig, kind: str = "") -> Path:
    """``runs/<algorithm>-<benchmark>[-kind]-<time>``: where a run without ``out`` goes."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    name = "-".join(part for part in (config.algorithm, config.benchmark, kind, stamp) if part)
    return Path("runs") / name


def run_part(resolved: Mapping[str, Any], first_round: int, threads: int) -> dict[str, Any]:
    """What runs one part of a run (all of it, or from a resume on): the rounds it starts
    at, the device, GPU, precision, threads, CPU, and protofl's version and commit."""
    import torch

    part: dict[str, Any] = {
        "first_round": first_round,
        "device": resolved.get("device"),
        "precision": resolved.get("precision"),
        "threads": threads or torch.get_num_threads(),
        "cpu": cpu_model(),
        **provenance(),
    }
    device = str(resolved.get("device") or "")
    if device.startswith("cuda") and torch.cuda.is_available():
        part["gpu"] = torch.cuda.get_device_name(torch.device(device))
        part["tf32"] = bool(torch.backends.cuda.matmul.allow_tf32)
    return part


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what the platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance() -> dict[str, Any]:
    """protofl's version and, in a git checkout, the commit and whether the tree had
    uncommitted changes (so a table can say what produced each run)."""
    return {"version": __version__, **_git_state()}


def _git_state() -> dict[str, Any]:
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
            cwd=here,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=here,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "uncommitted_changes": None}
    return {"commit": commit, "uncommitted_changes": bool(dirty)}
