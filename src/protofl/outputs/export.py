"""Hand a trained model on: the final global model of a run as ``model.safetensors`` plus
``model.json`` (model name and arguments, classes, the input and its normalisation, where it
came from), and for algorithms with local layers (FedBN) each client's own model under
``personal/``. :func:`load_exported` rebuilds a ready-to-use model from such a folder.

safetensors holds tensors only (no pickled code), so an exported model can be loaded from
an untrusted source safely.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import nn

from protofl.algorithms import ALGORITHMS, AlgorithmContext
from protofl.core.payloads import StateDict
from protofl.data.benchmarks import BENCHMARKS
from protofl.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from protofl.errors import ConfigError
from protofl.models import build_model
from protofl.outputs.checkpoint import CHECKPOINT, _read

WEIGHTS, FACTS = "model.safetensors", "model.json"


def export_run(run_dir: Path, out: Path) -> list[Path]:
    """Write the run's final global model (and personalised ones) into ``out``."""
    config_path, checkpoint = run_dir / "config.json", run_dir / CHECKPOINT
    if not config_path.is_file() or not checkpoint.is_file():
        raise ConfigError(
            f"{str(run_dir)!r} needs config.json and {CHECKPOINT} to export; is it a run folder?"
        )
    config = json.loads(config_path.read_text())
    payload = _read(checkpoint)
    if int(payload["round"]) < int(config["rounds"]):
        raise ConfigError(
            f"{str(run_dir)!r} stopped after round {payload['round']} of {config['rounds']}; "
            f"finish it first (protofl run --resume {run_dir}) or export knowingly from a copy."
        )
    out.mkdir(parents=True, exist_ok=True)
    written = [_save(payload["weights"], out / WEIGHTS)]
    facts = _facts(config, run_dir)
    (out / FACTS).write_text(json.dumps(facts, indent=2) + "\n")
    written.append(out / FACTS)
    spec = ALGORITHMS.get(config["algorithm"])
    classes = facts["arguments"]["num_classes"] or 0
    algorithm = spec.factory(spec.make_config({}), AlgorithmContext(classes, 0, config["rounds"]))
    for client_id, state in dict(payload["client_states"]).items():
        personal = algorithm.personal_weights(payload["weights"], state)
        if personal is not None:
            written.append(_save(personal, out / "personal" / f"{client_id}.safetensors"))
    return written


def load_exported(folder: Path, model: nn.Module | None = None, client: str = "") -> nn.Module:
    """The exported model, in eval mode: built from ``model.json`` (or ``model``, a user's own
    architecture, when the run trained one), with the global weights or ``client``'s own."""
    facts = json.loads((folder / FACTS).read_text())
    if model is None:
        if facts["model"] is None:
            raise ConfigError("this run trained a user's model: pass that model to load into.")
        model = build_model(facts["model"], facts["arguments"]["num_classes"])
    path = (
        folder / ("personal" if client else "") / (f"{client}.safetensors" if client else WEIGHTS)
    )
    model.load_state_dict(load_file(str(path)))
    return model.eval()


def _save(weights: StateDict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in weights.items()}, str(path))
    return path


def _facts(config: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    resolved = config.get("resolved", {})
    benchmark = str(config.get("benchmark"))
    # a run of a user's own model and data (train_federated) is not the benchmark's
    spec = BENCHMARKS.get(benchmark) if resolved.get("model") else None
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    # folder benchmarks learn their classes from the folders: config.json names them
    names = resolved.get("classes")
    num_classes = len(names) if names else (spec.num_classes if spec else None)
    size = int(config.get("image_size", spec.image_size)) if spec else None
    return {
        "model": resolved.get("model"),
        "arguments": {"num_classes": num_classes, "in_channels": 3},
        "classes": names or (list(range(num_classes)) if num_classes else None),
        "input": {
            "layout": "float [B, 3, H, W]",
            "size": [size, size] if size else None,
            "from_uint8": "x / 255, then (x - mean) / std per channel",
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
        },
        "algorithm": config["algorithm"],
        "benchmark": benchmark,
        "domains": resolved.get("domains"),
        "final_per_domain_accuracy": summary.get("per_domain_accuracy"),
        # bf16 and fp32 inference differ by a test sample here and there: the accuracy above
        # was measured in this precision (the last part's, for a resumed run)
        "accuracy_measured_in": _last_part(resolved).get("precision"),
        "produced_by": resolved.get("produced_by"),
        "run": str(run_dir),
    }


def _last_part(resolved: dict[str, Any]) -> dict[str, Any]:
    parts = resolved.get("parts") or [resolved]
    return dict(parts[-1])
