"""A data domain: named train and test images with labels, validated once on the way in."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from protofl.data.labels import as_class_indices
from protofl.errors import DataError


@dataclass(frozen=True, eq=False)
class Domain:
    """One domain of a benchmark (MNIST, Amazon, ...).

    Images are ``uint8`` arrays of shape (N, H, W, C) with C in {1, 3}; labels are 1-D
    ``torch.int64`` class ids. Build one with :meth:`from_arrays`, which validates.
    """

    name: str
    x_train: np.ndarray  # [N, H, W, C] uint8
    y_train: torch.Tensor  # [N] int64
    x_test: np.ndarray  # [M, H, W, C] uint8
    y_test: torch.Tensor  # [M] int64
    # what config.json records about how the domain was read (split, classes it lacks, ...)
    facts: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_arrays(
        cls,
        name: str,
        x_train: Any,
        y_train: Any,
        x_test: Any,
        y_test: Any,
        num_classes: int | None = None,
    ) -> Domain:
        """Validate images and pass labels through the label gate."""
        images_train = validate_images(x_train, f"{name}.x_train")
        images_test = validate_images(x_test, f"{name}.x_test")
        labels_train = as_class_indices(y_train, num_classes, name=f"{name}.y_train")
        labels_test = as_class_indices(y_test, num_classes, name=f"{name}.y_test")
        for images, labels, split in (
            (images_train, labels_train, "train"),
            (images_test, labels_test, "test"),
        ):
            if images.shape[0] != labels.shape[0]:
                raise DataError(
                    f"{name}: the {split} split has {images.shape[0]} images but "
                    f"{labels.shape[0]} labels. Fix: give exactly one label per image."
                )
        return cls(name, images_train, labels_train, images_test, labels_test)


def validate_images(x: Any, name: str) -> np.ndarray:
    """Return ``x`` as a uint8 (N, H, W, C) array, or raise :class:`DataError` saying why not."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    array = np.asarray(x)
    if array.ndim == 3:
        array = array[..., None]  # (N, H, W) grayscale
    if array.ndim != 4 or array.shape[-1] not in (1, 3):
        raise DataError(
            f"{name}: expected images of shape (N, H, W, C) with C = 1 or 3 (channels last); "
            f"got shape {tuple(array.shape)}. Fix: for (N, C, H, W) tensors pass "
            "x.permute(0, 2, 3, 1)."
        )
    if array.shape[0] == 0:
        raise DataError(f"{name}: expected at least one image; got none.")
    if array.dtype != np.uint8:
        raise DataError(
            f"{name}: expected uint8 pixel values 0..255; got dtype {array.dtype}. Fix: for "
            "floats in [0, 1] pass (x * 255).round().astype(np.uint8)."
        )
    return np.ascontiguousarray(array)
