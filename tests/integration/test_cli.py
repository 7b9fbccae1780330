"""End to end through the command line: a short run, its files, listing and errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from protofl.cli import main
from protofl.core.records import RoundRecord


@pytest.mark.slow
def test_run_writes_config_metrics_and_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    args = ["run", "--rounds", "2", "--local-epochs", "1", "--out", str(out), "--quiet"]
    args += ["--set", "clients_per_domain.handwritten=1", "--set", "client_fraction=0.1"]
    assert main(args) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "mean" in printed and "handwritten" in printed
    # every file the run left, the checkpoint included
    assert "config.json, metrics.jsonl, summary.json, checkpoint.pt)" in " ".join(printed.split())
    # what device=auto and precision=auto became (the suite hides GPUs)
    assert re.search(r"running on cpu \((fp32|bf16), \d+ threads\)", captured.err), captured.err
    config = json.loads((out / "config.json").read_text())
    assert config["algorithm"] == "fpl" and config["rounds"] == 2
    assert config["resolved"]["clients_per_domain"]["handwritten"] == 1
    lines = (out / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["round"] for r in records] == [1, 2]
    for record in records:
        accuracies = record["per_domain_accuracy"]
        assert set(accuracies) == set(config["resolved"]["domains"])
        assert all(0.0 <= a <= 1.0 for a in accuracies.values())
        mean = sum(accuracies.values()) / len(accuracies)
        assert record["mean_accuracy"] == pytest.approx(mean)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["per_domain_accuracy"] == records[-1]["per_domain_accuracy"]
    assert summary["timing"]["wall_seconds"] > 0
    # the same --out again is refused rather than overwritten
    assert main(args) == 2
    assert "already holds the results" in capsys.readouterr().err


def test_list_shows_everything(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    printed = capsys.readouterr().out
    for name in ("fpl", "fedavg", "embedded", "digits", "office-caltech", "resnet10", "cnn"):
        assert name in printed
    assert "paper-office" in printed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--algorithm", "fpll"], "Did you mean 'fpl'"),
        (["--benchmark", "ofice-caltech"], "Did you mean 'office-caltech'"),
        (["--domains", "mnist,usbs", "--benchmark", "digits"], "Did you mean 'usps'"),
        (["--set", "fpl.temprature=0.1"], "Did you mean 'temperature'"),
        (["--set", "lr=-1"], "lr must be > 0"),
        (["--preset", "nope"], "unknown preset 'nope'"),
    ],
)
def test_bad_input_exits_2_with_a_message(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["run", "--out", str(tmp_path / "x"), "--quiet", *args]) == 2
    assert message in capsys.readouterr().err


def test_missing_data_dir_says_how_to_get_data(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(
        [
            "run",
            "--benchmark",
            "office-caltech",
            "--data-dir",
            str(tmp_path / "none"),
            "--out",
            str(tmp_path / "x"),
            "--quiet",
        ]
    )
    assert code == 2
    assert "--data-dir" in capsys.readouterr().err


def test_module_entry_point_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "protofl", "--version"], capture_output=True, text=True, check=True
    )
    assert done.stdout.startswith("protofl ")


def test_the_run_folder_is_named_at_the_start_and_ctrl_c_prints_the_exact_resume_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import protofl.api

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(protofl.api, "execute", interrupted)
    monkeypatch.chdir(tmp_path)
    code = main(["run", "--rounds", "1", "--local-epochs", "1", "-q", "--set", "dataset_seed=1"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 130
    folder = err.split("writing to ")[1].split()[0]
    assert folder.startswith("runs/fpl-embedded-")
    assert f"continue: protofl run --resume {folder}" in err


def test_the_clients_bar_counts_the_sampled_clients_not_all_of_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import protofl.cli as cli
    from protofl.outputs.reporting import ProgressObserver

    seen: list[tuple[int | None, int]] = []  # (bar total, clients that trained) per round

    class Recording(ProgressObserver):
        trained = 0

        def round_started(self, round_index: int, rounds: int) -> None:
            super().round_started(round_index, rounds)
            self.trained = 0

        def client_finished(self, round_index: int, client_id: str) -> None:
            super().client_finished(round_index, client_id)
            self.trained += 1

        def round_finished(self, record: RoundRecord) -> None:
            super().round_finished(record)
            seen.append((self.clients, self.trained))

    monkeypatch.setattr(cli, "ProgressObserver", Recording)
    args = ["run", "--rounds", "2", "--local-epochs", "1", "--out", str(tmp_path / "run")]
    args += ["--set", "client_fraction=0.1", "--set", "clients_per_round=0.5"]
    assert main(args) == 0
    assert len(seen) == 2
    assert all(total == trained for total, trained in seen)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    clients = sum(config["resolved"]["clients_per_domain"].values())
    assert seen[0][1] == max(1, round(0.5 * clients)) < clients  # a sample, not everyone


def test_options_for_an_algorithm_that_does_not_run_are_warned_about(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import protofl.api

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # the warning comes before any training

    monkeypatch.setattr(protofl.api, "execute", interrupted)
    monkeypatch.chdir(tmp_path)
    main(["run", "--rounds", "1", "--set", "fedprox.mu=0.1", "--set", "fpl.temperature=0.5"])
    err = " ".join(capsys.readouterr().err.split())
    assert "options given for fedprox, which this run does not run (fpl)" in err
    assert "--set fedprox.mu=... have no effect" in err
    assert "fpl.temperature" not in err.split("warning")[1].split("writing to")[0]
    # a preset's tables for every algorithm are not the user's doing: no warning
    main(["run", "--rounds", "1", "--preset", "reduced-digits", "--benchmark", "embedded"])
    assert "options given for" not in capsys.readouterr().err


def test_python_options_for_another_algorithm_are_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    import numpy as np
    from torch import nn

    from protofl import ClientArrays, RunConfig, train_federated

    x = np.random.default_rng(0).normal(size=(16, 2)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    config = RunConfig(rounds=1, local_epochs=1, algorithm_options={"moon": {"mu": 1.0}})

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body, self.out = nn.Linear(2, 4), nn.Linear(4, 2)

        def features(self, x: object) -> object:
            return self.body(x)

        def head(self, z: object) -> object:
            return self.out(z)

    with caplog.at_level(logging.WARNING, logger="protofl"):
        train_federated([ClientArrays(x, y, domain="a")], {"a": (x, y)}, Net, config)
    assert "options given for moon, which this run does not run (fpl): " in caplog.text
    assert "algorithm_options['moon'] have no effect" in caplog.text
