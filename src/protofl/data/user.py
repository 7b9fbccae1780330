"""User-supplied data: per-client arrays in any accepted label format, validated here.

uint8 arrays of shape (N, H, W, C) are treated as images (scaled, normalised and, when
``augment`` is set, randomly cropped and flipped per batch); any other numeric array is
taken as ready-made model input and only cast to float32.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from protofl.data.labels import as_class_indices
from protofl.data.transforms import IMAGENET_MEAN, IMAGENET_STD, ImagePipeline, PassThrough
from protofl.engine.data import BatchTransform, ClientData, Federation, TensorSet, TestSet
from protofl.errors import DataError


@dataclass(frozen=True, eq=False)
class ClientArrays:
    """One client's data: inputs ``x`` [N, ...], labels ``y`` and its domain's name."""

    x: Any
    y: Any
    domain: str = "default"
    client_id: str | None = None


def federation_from_arrays(
    clients: Sequence[ClientArrays],
    test_sets: Mapping[str, tuple[Any, Any]],
    num_classes: int | None = None,
    augment: bool = True,
) -> Federation:
    """Validate every array once and build a :class:`Federation` from them."""
    if not clients:
        raise DataError("clients: expected at least one client; got none.")
    if not test_sets:
        raise DataError("test_sets: expected at least one {domain: (x, y)} entry; got none.")
    labels = [as_class_indices(c.y, num_classes, f"clients[{i}].y") for i, c in enumerate(clients)]
    tests = {
        d: as_class_indices(y, num_classes, f"test_sets[{d!r}].y")
        for d, (_, y) in test_sets.items()
    }
    classes = num_classes or 1 + max(int(t.max()) for t in [*labels, *tests.values()])
    built: list[ClientData] = []
    for index, (client, y) in enumerate(zip(clients, labels, strict=True)):
        inputs, transform = _inputs(client.x, len(y), f"clients[{index}].x", augment)
        client_id = client.client_id or f"{client.domain}-{index}"
        indices = torch.arange(len(y))
        built.append(ClientData(client_id, client.domain, TensorSet(inputs, y), indices, transform))
    evaluated = []
    for domain, (x, _) in test_sets.items():
        inputs, transform = _inputs(x, len(tests[domain]), f"test_sets[{domain!r}].x", augment)
        evaluated.append(TestSet(domain, TensorSet(inputs, tests[domain]), transform))
    ids = [c.client_id for c in built]
    if len(set(ids)) != len(ids):
        raise DataError(f"clients: client ids must be unique; got {ids}.")
    return Federation(tuple(built), tuple(evaluated), classes)


def _inputs(x: Any, count: int, name: str, augment: bool) -> tuple[torch.Tensor, BatchTransform]:
    try:
        tensor = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    except (TypeError, ValueError) as err:
        raise DataError(f"{name}: cannot read as a numeric array ({err}).") from err
    if tensor.ndim == 0 or tensor.shape[0] != count:
        shape = tuple(tensor.shape)
        raise DataError(f"{name}: expected {count} samples (one per label); got shape {shape}.")
    if tensor.dtype == torch.uint8 and tensor.ndim == 4:
        channels = tensor.shape[-1]
        if channels not in (1, 3):
            raise DataError(
                f"{name}: uint8 images must be (N, H, W, C) with C = 1 or 3; got "
                f"{tuple(tensor.shape)}. Fix: for (N, C, H, W) pass x.permute(0, 2, 3, 1)."
            )
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else ((0.5,), (0.5,))
        images = tensor.permute(0, 3, 1, 2).contiguous()
        return images, ImagePipeline(mean=mean, std=std, augment=augment)
    if not (tensor.is_floating_point() or tensor.dtype in (torch.int32, torch.int64, torch.uint8)):
        raise DataError(f"{name}: expected numeric inputs; got dtype {tensor.dtype}.")
    values = tensor.float()
    if not torch.isfinite(values).all():
        raise DataError(f"{name}: inputs contain NaN or inf. Fix: clean or impute them first.")
    return values, PassThrough()
