"""Models split into ``features`` and ``head``, and the registry that builds them by name."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from protofl.models.base import FeatureModel, check_feature_model
from protofl.models.cnn import SmallCNN
from protofl.models.resnet import ResNet10
from protofl.registry import Registry

ModelBuilder = Callable[[int, int], nn.Module]

MODELS: Registry[ModelBuilder] = Registry("model")
MODELS.add("resnet10", lambda num_classes, in_channels: ResNet10(num_classes, in_channels))
MODELS.add("cnn", lambda num_classes, in_channels: SmallCNN(num_classes, in_channels))


def build_model(name: str, num_classes: int, in_channels: int = 3) -> nn.Module:
    """Build the registered model ``name`` (its parameters drawn from torch's current RNG)."""
    return MODELS.get(name)(num_classes, in_channels)


__all__ = [
    "MODELS",
    "FeatureModel",
    "ResNet10",
    "SmallCNN",
    "build_model",
    "check_feature_model",
]
