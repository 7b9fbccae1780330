"""Contract tests over every registered model, and ResNet-10's architecture."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from protofl.errors import ConfigError
from protofl.models import MODELS, ResNet10, build_model, check_feature_model


@pytest.mark.parametrize("name", MODELS.names())
def test_features_and_head_shapes(name: str) -> None:
    model = build_model(name, num_classes=7)
    x = torch.randn(4, 3, 32, 32)
    dim = check_feature_model(model, x, num_classes=7)
    z = model.features(x)  # type: ignore[operator]
    assert z.shape == (4, dim)
    assert model.head(z).shape == (4, 7)  # type: ignore[operator]
    torch.testing.assert_close(model(x), model.head(model.features(x)))  # type: ignore[operator]


@pytest.mark.parametrize("name", MODELS.names())
def test_every_parameter_is_trained(name: str) -> None:
    """No unused modules in the state dict (the reference carries an unused MLP)."""
    model = build_model(name, num_classes=10)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert unused == []


def test_resnet10_matches_the_paper() -> None:
    model = ResNet10(num_classes=10)
    assert sum(p.numel() for p in model.parameters()) == 4_903_242  # reference: 4.90 M used
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    stages = [getattr(model, f"layer{i}") for i in range(1, 5)]
    assert [stage.conv2.out_channels for stage in stages] == [64, 128, 256, 512]
    assert [stage.conv1.stride[0] for stage in stages] == [1, 2, 2, 2]
    assert model.features(torch.randn(2, 3, 32, 32)).shape == (2, 512)
    assert model.classifier.in_features == 512
    # one entry per tensor: no module registered twice
    state = model.state_dict()
    assert len({t.data_ptr() for t in state.values()}) == len(state)


def test_check_feature_model_explains() -> None:
    x = torch.randn(2, 3, 32, 32)
    with pytest.raises(ConfigError, match="no method features or head"):
        check_feature_model(nn.Linear(3, 3), x, 10)
    with pytest.raises(ConfigError, match=r"head\(z\) must return \[B, 5\]"):
        check_feature_model(build_model("cnn", 10), x, 5)
    with pytest.raises(ConfigError, match=r"expected a torch\.nn\.Module"):
        check_feature_model(object(), x, 10)


def test_unknown_model_suggests() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'resnet10'"):
        build_model("resnet1O", 10)
