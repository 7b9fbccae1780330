"""``protofl export``: the exported model reproduces the run's final test accuracy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from protofl import RunConfig
from protofl.api import run
from protofl.cli import main
from protofl.engine.evaluate import evaluate
from protofl.engine.loading import load_federation
from protofl.errors import ConfigError
from protofl.outputs.export import load_exported

ONE_EACH = {"handwritten": 1, "synthetic": 1, "strokes": 1, "segments": 1}


@pytest.mark.parametrize("algorithm", ["fpl", "fedbn"])
def test_exported_model_reproduces_the_final_accuracy(algorithm: str, tmp_path: Path) -> None:
    config = RunConfig(
        algorithm=algorithm,
        rounds=2,
        local_epochs=1,
        clients_per_domain=ONE_EACH,
        client_fraction=0.1,
        precision="fp32",
        out=str(tmp_path / "run"),
    )
    result = run(config)
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "model")]) == 0
    facts = json.loads((tmp_path / "model" / "model.json").read_text())
    assert facts["model"] == "cnn" and facts["arguments"]["num_classes"] == 10
    assert facts["input"]["mean"] == [0.485, 0.456, 0.406]
    assert facts["accuracy_measured_in"] == "fp32"
    model = load_exported(tmp_path / "model")
    _, federation, _ = load_federation(config)
    got = evaluate(model, federation.test_sets, 512)
    assert got == pytest.approx(result.summary["per_domain_accuracy"], abs=1e-9)
    personal = sorted(p.stem for p in (tmp_path / "model" / "personal").glob("*.safetensors"))
    if algorithm == "fedbn":  # each client's own BatchNorm: its own model
        assert personal == sorted(c.client_id for c in federation.clients)
        own = load_exported(tmp_path / "model", client=personal[0]).state_dict()
        key = "stage1.1.running_mean"  # a BatchNorm statistic: the client's, not the average
        assert not torch.equal(own[key], model.state_dict()[key])
        shared = "stage1.0.weight"
        assert torch.equal(own[shared], model.state_dict()[shared])
    else:
        assert personal == []


def test_a_folder_without_a_run_is_refused(tmp_path: Path) -> None:
    from protofl.outputs.export import export_run

    with pytest.raises(ConfigError, match=r"needs config\.json and checkpoint\.pt"):
        export_run(tmp_path, tmp_path / "out")
