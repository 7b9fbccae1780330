"""Models split into ``features`` and ``head``, and the registry that builds them by name."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from protofl.core.registry import Registry
from protofl.models.base import FeatureModel, check_feature_model
from protofl.models.cnn import SmallCNN
from protofl.models.resnet import ResNet10

ModelBuilder = Callable[[int, int], nn.Module]

MODELS: Registry[ModelBuilder] = Registry("model")
MODELS.add("resnet10", lambda num_classes, in_channels: ResNet10(num_classes, in_channels))
MODELS.add("cnn", lambda num_classes, in_channels: SmallCNN(num_classes, in_channels))
MODEL_SUMMARIES = {
    "resnet10": "ResNet-10 as in the FPL paper; 512-d features, 4.9 M parameters",
    "cnn": "small CNN for the embedded benchmark and tests; 512-d features, 0.1 M parameters",
}


def build_model(name: str, num_classes: int, in_channels: int = 3) -> nn.Module:
    """Build the registered model ``name`` (its parameters drawn from torch's current RNG)."""
    return MODELS.get(name)(num_classes, in_channels)


__all__ = [
    "MODELS",
    "MODEL_SUMMARIES",
    "FeatureModel",
    "ResNet10",
    "SmallCNN",
    "build_model",
    "check_feature_model",
]
