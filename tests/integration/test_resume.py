"""Crash and resume: a run killed mid-round continues to exactly the uninterrupted result;
changed settings are refused; checkpoints never execute code."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from protofl.cli import main

TINY = [
    "--rounds", "3", "--local-epochs", "1", "--seed", "5", "--quiet",
    "--set", "client_fraction=0.1", "--set", "precision='fp32'",
    "--set", "clients_per_domain={handwritten=1, synthetic=1, strokes=1, segments=1}",
    # exact equality across processes needs the same intra-op thread count on both sides
    # (an earlier in-process run may have changed this process's)
    "--set", "threads=1",
]  # fmt: skip


def rounds_of(folder: Path) -> list[dict[str, object]]:
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    for record in records:
        record.pop("train_seconds")
        record.pop("eval_seconds")
    return records


def wait_for_rounds(folder: Path, count: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    metrics = folder / "metrics.jsonl"
    while time.monotonic() < deadline and process.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"the run did not reach round {count} (exit code {process.poll()})")


@pytest.mark.slow
def test_sigkill_mid_round_then_resume_matches_uninterrupted_run(tmp_path: Path) -> None:
    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "protofl", "run", *TINY, "--out", str(killed)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_rounds(killed, 1, process)
        time.sleep(0.2)  # inside round 2
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    done_before_kill = len(rounds_of(killed))
    assert 1 <= done_before_kill < 3, "the kill came too late to test a resume"

    assert main(["run", "--resume", str(killed), "--quiet"]) == 0
    straight = tmp_path / "straight"
    assert main(["run", *TINY, "--out", str(straight)]) == 0

    assert rounds_of(killed) == rounds_of(straight)
    summary = json.loads((killed / "summary.json").read_text())
    reference = json.loads((straight / "summary.json").read_text())
    assert summary["per_domain_accuracy"] == reference["per_domain_accuracy"]
    assert summary["resumed_from_round"] == done_before_kill


@pytest.mark.slow
def test_resume_refuses_changed_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "run"
    args = [*TINY, "--out", str(folder)]
    args[args.index("3")] = "1"  # one round is enough here
    assert main(["run", *args]) == 0
    code = main(["run", "--resume", str(folder), "--quiet", "--seed", "6", "--set", "lr=0.5"])
    assert code == 2
    message = " ".join(capsys.readouterr().err.split())
    assert "seed (saved 5, given 6)" in message  # lr may change on resume; the seed may not
    assert "lr (saved" not in message
    assert "may change only device, lr, momentum, precision, rounds" in message
    # settings equal to the saved ones, or another thread count (how the run executes, not
    # what it is), pass the check; round 1 of 1 is done, so there is nothing to resume
    for same in (["--seed", "5"], ["--set", "threads=1"]):
        assert main(["run", "--resume", str(folder), "--quiet", *same]) == 2
        assert "already finished all 1 rounds" in " ".join(capsys.readouterr().err.split())


def test_resume_without_checkpoint_or_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--resume", str(tmp_path), "--quiet"]) == 2
    assert "not a protofl run folder" in capsys.readouterr().err


class Exploit:
    """Unpickling this would create a marker file; a safe loader must refuse it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.slow
def test_malicious_or_truncated_checkpoint_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "run"
    args = [*TINY, "--out", str(folder)]
    args[args.index("3")] = "1"
    assert main(["run", *args]) == 0
    checkpoint = folder / "checkpoint.pt"
    good = checkpoint.read_bytes()

    marker = tmp_path / "pwned"
    checkpoint.write_bytes(pickle.dumps({"format": Exploit(marker)}, protocol=2))
    assert main(["run", "--resume", str(folder), "--quiet"]) == 2
    assert "cannot read the checkpoint" in capsys.readouterr().err
    assert not marker.exists()

    checkpoint.write_bytes(good[: len(good) // 2])
    assert main(["run", "--resume", str(folder), "--quiet"]) == 2
    assert "truncated" in capsys.readouterr().err


@pytest.mark.slow
def test_each_part_of_a_resumed_run_is_recorded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """config.json's resolved.parts: where each part ran (threads, device, precision, CPU,
    commit); a part on another precision is recorded as a change and warned about."""
    folder = tmp_path / "run"
    args = [*TINY, "--out", str(folder)]
    args[args.index("3")] = "1"
    assert main(["run", *args]) == 0
    resumed = ["run", "--resume", str(folder), "--quiet", "--rounds", "2"]
    with caplog.at_level("WARNING", logger="protofl"):
        assert main([*resumed, "--set", "threads=2", "--set", "precision='fp64'"]) == 0
    stored = json.loads((folder / "config.json").read_text())
    parts = stored["resolved"]["parts"]
    assert [p["first_round"] for p in parts] == [1, 2]
    assert [p["threads"] for p in parts] == [1, 2]
    assert [p["precision"] for p in parts] == ["fp32", "fp64"]
    assert all(p["cpu"] and "version" in p and "commit" in p for p in parts)
    assert stored["resume_changes"][-1]["precision"] == ["fp32", "fp64"]
    assert "rounds from 2 on run with precision fp64, the rounds before with fp32" in caplog.text
