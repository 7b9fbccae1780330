"""What every model must offer: a feature extractor and a classification head.

MOON, FedProto and FPL all work on the penultimate representation, so every model is split
into ``features(x) -> [B, D]`` and ``head(z) -> [B, C]`` (the timm convention of
``forward_features`` / ``forward_head``).
"""

from __future__ import annotations

from typing import Protocol, cast, runtime_checkable

import torch
from torch import nn

from protofl.errors import ConfigError


@runtime_checkable
class FeatureModel(Protocol):
    """A classifier split into a feature extractor and a head."""

    def features(self, x: torch.Tensor) -> torch.Tensor: ...

    def head(self, z: torch.Tensor) -> torch.Tensor: ...


def feature_model(model: nn.Module) -> FeatureModel:
    """``model`` seen through the feature/head contract (checked at the boundary by
    :func:`check_feature_model`, trusted afterwards)."""
    return cast(FeatureModel, model)


def check_feature_model(
    model: object, example: torch.Tensor, num_classes: int, name: str = "model"
) -> int:
    """Check ``model`` against the contract on one example batch; return the feature size D.

    Used at the boundary when a user hands us their own model, so that a wrong model fails
    here with a clear message instead of deep inside training.
    """
    if not isinstance(model, nn.Module):
        raise ConfigError(f"{name}: expected a torch.nn.Module; got {type(model).__name__}.")
    missing = [m for m in ("features", "head") if not callable(getattr(model, m, None))]
    if missing:
        raise ConfigError(
            f"{name}: {type(model).__name__} has no method {' or '.join(missing)}. protofl "
            "needs features(x) -> [B, D] and head(z) -> [B, C]; split your forward() there."
        )
    was_training = model.training
    model.eval()
    typed = feature_model(model)
    with torch.no_grad():
        z = typed.features(example)
        if not isinstance(z, torch.Tensor) or z.ndim != 2 or z.shape[0] != example.shape[0]:
            shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ConfigError(
                f"{name}.features(x) must return a [B, D] tensor for a batch of "
                f"B={example.shape[0]}; got {shape}. Fix: flatten the pooled features."
            )
        logits = typed.head(z)
        if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (
            example.shape[0],
            num_classes,
        ):
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else logits
            raise ConfigError(
                f"{name}.head(z) must return [B, {num_classes}] logits; got {shape}. "
                f"Fix: give the head {num_classes} outputs."
            )
    model.train(was_training)
    return int(z.shape[1])
