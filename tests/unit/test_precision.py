"""The bf16 fast path against fp32: same maths within bf16's precision, fp32 payloads."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from protofl.algorithms.losses import cluster_contrastive_loss, unbiased_consistency_loss
from protofl.algorithms.prototypes import class_means
from protofl.engine.client import copy_state
from protofl.engine.precision import FP32, Precision, native_bf16, resolve_precision
from protofl.errors import ConfigError
from protofl.models import build_model
from protofl.models.base import feature_model

BF16 = Precision("bf16", "cpu")


def test_resolve_precision() -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu).name == "fp32"
    assert resolve_precision("bf16", cpu).name == "bf16"
    assert resolve_precision("auto", cpu).name == ("bf16" if native_bf16(cpu) else "fp32")
    assert resolve_precision("fp64", cpu).dtype == torch.float64
    with pytest.raises(ConfigError, match="precision must be one of auto, fp32, bf16, fp64"):
        resolve_precision("fp16", cpu)


def fpl_terms(precision: Precision, model: torch.nn.Module) -> dict[str, float]:
    generator = torch.Generator().manual_seed(0)
    inputs = precision.prepare_input(torch.randn(32, 3, 32, 32, generator=generator))
    labels = torch.arange(32) % 10
    prototypes = torch.rand(20, 512, generator=generator)
    prototype_labels = torch.arange(20) % 10
    unbiased, has = class_means_from(prototypes, prototype_labels)
    with torch.no_grad(), precision.autocast():
        net = feature_model(model)
        features = net.features(inputs)
        logits = net.head(features)
    features, logits = features.float(), logits.float()
    return {
        "ce": F.cross_entropy(logits, labels).item(),
        "cpcl": cluster_contrastive_loss(
            features, labels, prototypes, prototype_labels, 0.02
        ).item(),
        "upcr": unbiased_consistency_loss(features, labels, unbiased, has).item(),
    }


def class_means_from(
    vectors: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    from protofl.core.payloads import Prototypes

    return class_means(Prototypes(vectors, labels, torch.ones_like(labels)), 10)


@pytest.mark.parametrize("name", ["cnn", "resnet10"])
def test_bf16_losses_are_close_to_fp32_on_a_fixed_batch(name: str) -> None:
    torch.manual_seed(0)
    reference = build_model(name, 10).eval()
    fast = build_model(name, 10).eval()
    fast.load_state_dict(reference.state_dict())
    BF16.prepare_model(fast)
    exact, approx = fpl_terms(FP32, reference), fpl_terms(BF16, fast)
    for term in exact:
        assert approx[term] == pytest.approx(exact[term], rel=0.03), term


def test_channels_last_fp32_changes_layout_not_values() -> None:
    torch.manual_seed(0)
    model = build_model("cnn", 10).eval()
    x = torch.randn(4, 3, 32, 32)
    expected = model(x)
    model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    torch.testing.assert_close(model(x.contiguous(memory_format=torch.channels_last)), expected)


def test_payloads_stay_contiguous_fp32_on_the_fast_path() -> None:
    model = BF16.prepare_model(build_model("cnn", 10))
    state = copy_state(model)
    assert all(t.is_contiguous() for t in state.values())
    assert state["stage1.0.weight"].dtype == torch.float32


@pytest.mark.parametrize("algorithm", ["fpl", "fedplvm", "moon"])
def test_fp64_keeps_weights_and_prototypes_in_float64_end_to_end(algorithm: str) -> None:
    """The golden runs' precision: nothing on the way casts back to float32."""
    from protofl import RunConfig, train_federated

    from tiny_data import TinyNet, tiny_clients

    clients, tests = tiny_clients(per_client=24)
    config = RunConfig(
        algorithm=algorithm, rounds=2, local_epochs=1, batch_size=16, precision="fp64"
    )
    result = train_federated(clients, tests, TinyNet, config)
    floats = [t for t in result.state.weights.values() if t.is_floating_point()]
    assert floats and all(t.dtype == torch.float64 for t in floats)
    if algorithm != "moon":
        assert result.state.prototypes is not None
        assert result.state.prototypes.vectors.dtype == torch.float64
