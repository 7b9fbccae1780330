"""What a demanding user found by breaking runs on purpose: each has its message here."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from protofl import RunConfig, train_federated
from protofl.api import resume, run
from protofl.core.records import RoundRecord
from protofl.errors import ConfigError
from protofl.federation.health import collapse_warning
from protofl.outputs.run_folder import RunFolder

from tiny_data import TinyNet, tiny_clients


def small_run(tmp_path: Path, rounds: int) -> RunConfig:
    """The embedded benchmark with one small client per domain, written to tmp/run."""
    one_each = {"handwritten": 1, "synthetic": 1, "strokes": 1, "segments": 1}
    return RunConfig(
        rounds=rounds,
        local_epochs=1,
        out=str(tmp_path / "run"),
        clients_per_domain=one_each,
        client_fraction=0.1,
    )


def test_a_second_writer_of_a_run_folder_is_refused(tmp_path: Path) -> None:
    first = RunFolder.create(RunConfig(out=str(tmp_path / "run")), {})
    with pytest.raises(ConfigError, match=r"is being written by protofl process \d+"):
        RunFolder.create(RunConfig(out=str(tmp_path / "run")), {}, overwrite=True)
    first.close()
    RunFolder.create(RunConfig(out=str(tmp_path / "run")), {}, overwrite=True).close()


def test_resuming_a_finished_run_changes_nothing(tmp_path: Path) -> None:
    config = small_run(tmp_path, rounds=1)
    run(config)
    before = (tmp_path / "run" / "summary.json").read_text()
    with pytest.raises(ConfigError, match="already finished all 1 rounds; there is nothing"):
        resume(tmp_path / "run")
    assert (tmp_path / "run" / "summary.json").read_text() == before


def record(round_index: int, loss: float, accuracy: float) -> RoundRecord:
    return RoundRecord(
        round_index, {"d": 0.1}, 0.1, {"loss": loss, "accuracy": accuracy}, {}, 0, 1.0, 0.1
    )


def test_collapse_is_named_with_what_to_change() -> None:
    healthy = [record(1, 2.3, 0.3), record(2, 1.9, 0.5)]
    assert collapse_warning(healthy, 10, "fpl") is None
    slow_but_learning = [record(1, 1.4, 0.23), record(2, 1.35, 0.30)]  # 4 classes
    assert collapse_warning(slow_but_learning, 4, "fpl") is None
    assert collapse_warning(healthy[:1], 10, "fpl") is None  # not before round 2
    at_chance = [record(1, 2.3, 0.11), record(2, 2.3, 0.12)]
    message = collapse_warning(at_chance, 10, "fpl", temperature=0.05)
    assert message is not None and "12.0% (chance is 10.0%)" in message
    assert "fpl.temperature (0.05)" in message  # the run's value, not the default's
    assert "--set fpl.temperature=0.5" in message  # the command line's syntax
    assert "algorithm_options={'fpl': {'temperature': 0.5}}" in message  # and Python's
    exploding = [record(1, 2.0, 0.5), record(2, 32.0, 0.6)]
    message = collapse_warning(exploding, 10, "fedavg")
    assert message is not None and "grew from 2 to 32" in message and "smaller lr" in message


def test_a_diverging_run_says_so_once(caplog: pytest.LogCaptureFixture) -> None:
    clients, tests = tiny_clients()
    torch.manual_seed(0)
    config = RunConfig(rounds=3, local_epochs=1, batch_size=16, lr=10.0, precision="fp32")
    with caplog.at_level(logging.WARNING, logger="protofl.sim.simulator"):
        train_federated(clients, tests, TinyNet(), config)
    warnings = [r.message for r in caplog.records if "training looks collapsed" in r.message]
    assert len(warnings) == 1, [r.message for r in caplog.records]


def test_resume_may_add_rounds_and_change_the_optimiser_and_records_it(tmp_path: Path) -> None:
    config = small_run(tmp_path, rounds=1)
    run(config)
    with pytest.raises(ConfigError, match=r"seed \(saved 0, given 5\).*may change only device, lr"):
        resume(tmp_path / "run", changes={"rounds": 2, "seed": 5})
    result = resume(tmp_path / "run", changes={"rounds": 2, "lr": 0.005})
    assert [r.round for r in result.history] == [1, 2]
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (saved["rounds"], saved["lr"]) == (2, 0.005)
    assert saved["resume_changes"] == [{"after_round": 1, "rounds": [1, 2], "lr": [0.01, 0.005]}]
    with pytest.raises(ConfigError, match="rounds can only grow"):
        resume(tmp_path / "run", changes={"rounds": 1})


def test_an_unwritable_out_is_explained_before_training() -> None:
    config = RunConfig(rounds=1, local_epochs=1, out="/proc/protofl-cannot-write/run")
    with pytest.raises(ConfigError, match=r"cannot write the run folder .*read-only or full"):
        RunFolder.create(config, {})


def test_a_full_disk_while_checkpointing_names_it_and_keeps_the_last_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from protofl.errors import DataError

    config = small_run(tmp_path, rounds=2)
    real_save, calls = torch.save, {"n": 0}

    def disk_fills_in_round_two(obj: object, path: object) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("[enforce fail at inline_container.cc] unexpected pos 1024")
        real_save(obj, path)  # type: ignore[arg-type]

    monkeypatch.setattr("protofl.outputs.checkpoint.torch.save", disk_fills_in_round_two)
    with pytest.raises(
        DataError, match=r"round 2 .*previous round's checkpoint is intact.*--resume"
    ):
        run(config)
    assert not (tmp_path / "run" / "checkpoint.pt.tmp").exists()
    monkeypatch.setattr("protofl.outputs.checkpoint.torch.save", real_save)
    finished = resume(tmp_path / "run")  # space freed: the run continues from round 1
    assert [r.round for r in finished.history] == [1, 2]


def test_a_disk_full_before_the_first_checkpoint_says_so_and_what_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No checkpoint yet: the message says "disk full" (not torch's "unexpected pos") and
    to start again with --overwrite, which then works; it does not send the user to a
    --resume that would be refused."""
    import shutil

    from protofl.errors import DataError

    config = small_run(tmp_path, rounds=1)
    real_save, real_usage = torch.save, shutil.disk_usage

    def disk_full(obj: object, path: object) -> None:
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr("protofl.outputs.checkpoint.torch.save", disk_full)
    monkeypatch.setattr(
        "protofl.outputs.results.shutil.disk_usage", lambda p: real_usage(p)._replace(free=4096)
    )
    with pytest.raises(DataError) as failure:
        run(config)
    message = str(failure.value)
    assert "the disk is full" in message and "4 KiB free" in message, message
    assert "unexpected pos" not in message and "--resume" not in message, message
    assert "nothing to resume" in message and "--overwrite" in message, message
    monkeypatch.setattr("protofl.outputs.checkpoint.torch.save", real_save)
    monkeypatch.setattr("protofl.outputs.results.shutil.disk_usage", real_usage)
    finished = run(config, overwrite=True)  # what the message says, once space is freed
    assert [r.round for r in finished.history] == [1]
