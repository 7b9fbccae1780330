"""Where tensors live, checked on a CPU: the suite sees no GPU, ``precision=auto`` asks the
GPU itself whether bf16 is native, a model on another device still gets the label check, the
normalisation constants are made once per device, and payloads come back on the CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from protofl.builders import check_labels_fit_head, resolve_device
from protofl.data import ClientArrays
from protofl.data.transforms import ImagePipeline, channel_constants
from protofl.data.user import federation_from_arrays
from protofl.engine.precision import native_bf16
from protofl.errors import DataError


def test_the_suite_sees_no_gpu() -> None:
    """tests/conftest.py hides GPUs: device="auto" means the CPU in every test."""
    assert os.environ.get("CUDA_VISIBLE_DEVICES") == "" or torch.cuda.device_count() == 0
    assert resolve_device("auto").type == "cpu"


@pytest.mark.parametrize(
    ("capability", "native"),
    [((7, 5), False), ((7, 0), False), ((6, 0), False), ((8, 0), True), ((9, 0), True)],
    ids=["T4", "V100", "P100", "A100", "H100"],
)
def test_auto_picks_bf16_only_on_gpus_that_compute_it_natively(
    capability: tuple[int, int], native: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch.cuda.is_bf16_supported() says True on a T4 (emulation counts by default)."""
    asked = []

    def fake_capability(device: torch.device) -> tuple[int, int]:
        asked.append(device)
        return capability

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", fake_capability)
    assert native_bf16(torch.device("cuda", 1)) is native
    assert asked == [torch.device("cuda", 1)]  # that GPU, not the current one


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(2, 4)
        self.out = nn.Linear(4, 2)  # two outputs

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def head(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(z)


def test_a_model_on_another_device_still_gets_the_label_check() -> None:
    """A model already moved elsewhere (a GPU; here the meta device, which likewise refuses
    CPU inputs) used to skip the check silently; a label 5 then became a device-side assert."""
    x = np.zeros((6, 2), dtype=np.float32)
    federation = federation_from_arrays(
        [ClientArrays(x, np.array([0, 1, 5, 0, 1, 5]), domain="a")],
        {"a": (x, np.zeros(6, dtype=np.int64))},
        None,
        False,
    )
    with pytest.raises(DataError, match="client"):
        check_labels_fit_head(Tiny().to("meta"), federation)


def test_normalisation_constants_are_made_once_per_device() -> None:
    """Not per batch: on a GPU each host-to-device copy waits for all queued work."""
    pipeline = ImagePipeline()
    batch = torch.randint(0, 255, (4, 3, 8, 8), dtype=torch.uint8)
    pipeline.eval(batch)
    before = channel_constants.cache_info()
    for _ in range(3):
        pipeline.eval(batch)
        pipeline.train(batch, torch.Generator().manual_seed(0))
    after = channel_constants.cache_info()
    assert after.misses == before.misses and after.hits == before.hits + 12
    expected = (batch.float() / 255 - torch.tensor(pipeline.mean).view(1, 3, 1, 1)) / torch.tensor(
        pipeline.std
    ).view(1, 3, 1, 1)
    torch.testing.assert_close(pipeline.eval(batch), expected)


def test_a_gpu_index_beyond_the_machine_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from protofl.errors import ConfigError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ConfigError, match=r"has 2 GPU\(s\), cuda:0\.\.cuda:1"):
        resolve_device("cuda:2")


def test_deterministic_switches_torch_to_deterministic_kernels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from protofl import RunConfig, train_federated

    from tiny_data import TinyNet, tiny_clients

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    clients, tests = tiny_clients(per_client=24)
    config = RunConfig(rounds=1, local_epochs=1, batch_size=16, precision="fp32")
    try:
        train_federated(clients, tests, TinyNet, config)
        assert not torch.are_deterministic_algorithms_enabled()  # off by default
        deterministic = RunConfig(**{**config.to_dict(), "deterministic": True})
        train_federated(clients, tests, TinyNet, deterministic)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False


def test_small_cnn_pools_as_adaptive_pooling_did() -> None:
    """avg_pool2d over halves (deterministic on CUDA) equals adaptive_avg_pool2d(out, 2)."""
    import torch.nn.functional as F

    from protofl.models import build_model
    from protofl.models.base import feature_model

    model = build_model("cnn", 10).eval()
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        stage = dict(model.named_children())
        inner = stage["stage3"](
            F.max_pool2d(stage["stage2"](F.max_pool2d(stage["stage1"](x), 2)), 2)
        )
        expected = torch.flatten(F.adaptive_avg_pool2d(inner, 2), 1)
        torch.testing.assert_close(feature_model(model).features(x), expected)


def test_flower_simulation_gives_clients_a_gpu_share_when_the_server_has_a_gpu() -> None:
    pytest.importorskip("flwr")
    from protofl.flower.simulation import default_backend

    on_cpu = default_backend(nn.Linear(2, 2), 4)
    assert on_cpu == {"client_resources": {"num_cpus": 1, "num_gpus": 0.0}}
    on_meta = default_backend(nn.Linear(2, 2).to("meta"), 4)  # only a CUDA model gets one
    assert on_meta["client_resources"]["num_gpus"] == 0.0

    class OnCuda(nn.Module):  # a parameter that reports a CUDA device, without a GPU
        def parameters(self, recurse: bool = True):  # type: ignore[no-untyped-def]
            class Fake:
                device = torch.device("cuda", 0)

            yield Fake()

    assert default_backend(OnCuda(), 4)["client_resources"]["num_gpus"] == 0.25


def test_the_gpu_check_says_there_is_no_gpu_and_exits_0(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "gpu.json")],
        capture_output=True,
        text=True,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "no CUDA GPU here" in done.stdout and not (tmp_path / "gpu.json").exists()


def test_flower_nodes_spread_over_the_gpus_with_device_auto(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("flwr")
    from protofl.flower.client import node_device

    assert node_device("auto", 5) == "auto"  # no GPU here
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert [node_device("auto", i) for i in (0, 1, 5, 7)] == [
        "cuda:0",
        "cuda:1",
        "cuda:1",
        "cuda:3",
    ]
    assert node_device("cuda:2", 5) == "cuda:2" and node_device("cpu", 5) == "cpu"
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert node_device("auto", 3) == "auto"
