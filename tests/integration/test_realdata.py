"""The real benchmarks from the shared data folder: the paper's clients, and a short run.

Skipped, with the reason, when the files are not on this machine (set PROTOFL_DATA_DIR).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from protofl import RunConfig
from protofl.cli import main
from protofl.engine.loading import load_federation

from tiny_data import shared_data_or_skip

pytestmark = pytest.mark.realdata

OFFICE_FILES = [f"office_{d}.npz" for d in ("caltech", "amazon", "webcam", "dslr")]


def test_office_caltech_clients_follow_the_paper() -> None:
    folder = shared_data_or_skip(*OFFICE_FILES)
    config = RunConfig(benchmark="office-caltech", data_dir=str(folder))
    _, federation, resolved = load_federation(config)
    assert resolved["clients_per_domain"] == {"caltech": 3, "amazon": 2, "webcam": 1, "dslr": 4}
    sizes = {c.client_id: len(c) for c in federation.clients}
    # 20% of the 80% train split per client (fpl-reference.md: C 179, A 153, W 47, D 25)
    expected = {"caltech": 179, "amazon": 153, "webcam": 47, "dslr": 25}
    assert all(size == expected[cid.rsplit("-", 1)[0]] for cid, size in sizes.items())
    for client in federation.clients:
        assert set(client.source.labels[client.indices].tolist()) == set(range(10))
    assert resolved["test_sizes"] == {"caltech": 224, "amazon": 190, "webcam": 58, "dslr": 30}
    assert federation.test_sets[0].data.inputs.shape[1:] == (3, 32, 32)


def test_digits_subset_clients_follow_the_paper() -> None:
    folder = shared_data_or_skip("mnist.npz", "usps.npz")
    config = RunConfig(benchmark="digits", domains=("mnist", "usps"), data_dir=str(folder))
    _, federation, resolved = load_federation(config)
    assert resolved["clients_per_domain"] == {"mnist": 6, "usps": 4}
    assert sorted({len(c) for c in federation.clients}) == [72, 600]  # 1% of 7291 and 60000
    assert resolved["test_sizes"] == {"mnist": 10000, "usps": 2007}
    images = federation.test_sets[1].data.inputs
    assert images.shape == (2007, 3, 32, 32) and images.dtype == torch.uint8
    assert torch.equal(images[:, 0], images[:, 1])  # gray repeated to RGB


@pytest.mark.slow
def test_office_caltech_run_from_the_command_line(tmp_path: Path) -> None:
    folder = shared_data_or_skip(*OFFICE_FILES)
    out = tmp_path / "office"
    args = ["run", "--benchmark", "office-caltech", "--data-dir", str(folder), "--rounds", "1"]
    assert main([*args, "--local-epochs", "1", "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["per_domain_accuracy"]) == {"caltech", "amazon", "webcam", "dslr"}
    config = json.loads((out / "config.json").read_text())
    assert config["resolved"]["model"] == "resnet10"
    assert len(config["resolved"]["client_sizes"]) == 10


@pytest.mark.slow
def test_digits_subset_run_from_the_command_line(tmp_path: Path) -> None:
    folder = shared_data_or_skip("mnist.npz", "usps.npz")
    out = tmp_path / "digits"
    args = ["run", "--benchmark", "digits", "--domains", "mnist,usps", "--data-dir", str(folder)]
    args += ["--rounds", "1", "--local-epochs", "1", "--model", "cnn", "--out", str(out), "-q"]
    assert main(args) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert list(records[0]["per_domain_accuracy"]) == ["mnist", "usps"]
