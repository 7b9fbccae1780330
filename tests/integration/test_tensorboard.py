"""TensorBoard: the event files hold the round's scalars and the projector the prototypes
(read back, not just found)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("tensorboard", reason="TensorBoard is optional: protofl[tensorboard]")

from tensorboard.backend.event_processing.event_accumulator import (
    EventAccumulator,
)

from protofl import RunConfig
from protofl.api import run

ONE_EACH = {"handwritten": 1, "synthetic": 1, "strokes": 1, "segments": 1}


def test_scalars_and_prototype_projector_are_written(tmp_path: Path) -> None:
    config = RunConfig(
        rounds=2,
        local_epochs=1,
        clients_per_domain=ONE_EACH,
        client_fraction=0.1,
        tensorboard=True,
        out=str(tmp_path / "run"),
    )
    result = run(config)
    board = tmp_path / "run" / "tensorboard" / "fpl-seed0"  # named for --logdir runs/
    events = EventAccumulator(str(board))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {
        "accuracy/mean",
        "accuracy/handwritten",
        "accuracy/pooled",
        "fairness/domain_std",
        "fairness/worst_domain",
        "train/ce",
        "train/cpcl",
        "time/train_seconds",
    } <= tags
    assert any(tag.startswith("clients/handwritten-0/") for tag in tags)
    logged = [e.value for e in events.Scalars("accuracy/mean")]
    assert logged == pytest.approx([r.mean_accuracy for r in result.history])
    pooled = [e.value for e in events.Scalars("accuracy/pooled")]
    assert pooled == pytest.approx([r.pooled_accuracy for r in result.history])
    sizes = json.loads((tmp_path / "run" / "config.json").read_text())["resolved"]["test_sizes"]
    for record in result.history:  # correct over all test samples: a whole count of them
        assert record.pooled_accuracy is not None
        correct = record.pooled_accuracy * sum(sizes.values())
        assert correct == pytest.approx(round(correct))
    projector = (board / "projector_config.pbtxt").read_text()
    assert projector.count("embeddings {") == 2  # one per round
    metadata = sorted(board.glob("*/prototypes/metadata.tsv"))
    assert len(metadata) == 2
    header, *rows = metadata[-1].read_text().splitlines()
    assert header.split("\t") == ["class", "kind", "domain", "round"]
    kinds = {row.split("\t")[1] for row in rows}
    assert kinds <= {"cluster", "global", "unbiased (class mean)"}  # FPL's prototypes
    assert all(row.split("\t")[3] == "2" for row in rows)
    broadcast = [r for r in rows if not r.split("\t")[1].startswith("unbiased")]
    assert len(broadcast) == result.history[-1].num_prototypes
