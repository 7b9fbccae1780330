"""Image-folder datasets (``root/<class_name>/<image files>``) and the Office-Caltech 80/20 split.

Ordering follows torchvision's ``ImageFolder``, which the FPL reference (RethinkFL) uses for
SYN and Office-Caltech-10: class folders sorted by name give ids 0..C-1, and files are taken in
sorted order within each class. Images are decoded with Pillow, converted to RGB and resized
with BILINEAR, as ``transforms.Resize`` does on PIL images, and returned as uint8 NHWC.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from protofl.data.formats import Splits
from protofl.errors import DataError, DataNotFoundError

logger = logging.getLogger(__name__)

# The extensions torchvision's ImageFolder accepts, so both pick the same files.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
OFFICE_TRAIN_REMAINDERS = 8  # sample i goes to train when i % 10 <= 7 (RethinkFL's rule)


class FolderImages(NamedTuple):
    """Images read from an image folder, in (class, file name) order."""

    images: np.ndarray  # [N, H, W, 3] uint8
    labels: np.ndarray  # [N] int64 class ids
    classes: tuple[str, ...]  # class id -> folder name
    paths: tuple[Path, ...]  # the file of each image


def list_image_folder(
    root: str | os.PathLike[str],
) -> tuple[tuple[str, ...], list[tuple[Path, int]]]:
    """Return the sorted class names and (file, class id) pairs in ImageFolder order."""
    root = Path(root)
    if not root.is_dir():
        raise DataNotFoundError(
            f"{root}: image folder not found; expected a directory with one sub-folder of "
            "images per class."
        )
    # Hidden folders (.ipynb_checkpoints, ...) are not classes; ImageFolder would count them.
    with os.scandir(root) as entries:
        classes = tuple(sorted(entry.name for entry in entries if _is_class_dir(entry)))
    if not classes:
        raise DataError(
            f"{root}: no class folders; expected root/<class_name>/<image files>. Fix: point to "
            "the folder that holds the class folders."
        )
    samples = [
        (path, class_id)
        for class_id, name in enumerate(classes)
        for path in _class_images(root / name)
    ]
    return classes, samples


def _is_class_dir(entry: os.DirEntry[str]) -> bool:
    return entry.is_dir() and not entry.name.startswith(".")


def _class_images(class_dir: Path) -> list[Path]:
    """torchvision ImageFolder's files and order (``sorted(os.walk)``, its extensions, hidden
    files included), so Office-Caltech and SYN keep the reference code's sample order and
    80/20 split. ``folder_scan.class_images`` (folders, PACS, Office-Home, DomainNet) has
    other rules on purpose: hidden entries skipped, GIF accepted, an empty class absent
    rather than an error. Merging them would move Office-Caltech's samples."""
    found: list[Path] = []
    skipped = 0
    for folder, _, names in sorted(os.walk(class_dir, followlinks=True)):
        for name in sorted(names):
            if name.lower().endswith(IMAGE_EXTENSIONS):
                found.append(Path(folder) / name)
            else:
                skipped += 1
    if skipped:
        logger.info("%s: skipped %d file(s) that are not images", class_dir, skipped)
    if not found:
        raise DataError(
            f"{class_dir}: class folder without images; expected files ending in "
            f"{', '.join(IMAGE_EXTENSIONS)}. Fix: remove the folder or add its images."
        )
    return found


def read_image(path: str | os.PathLike[str], size: tuple[int, int]) -> np.ndarray:
    """Decode one image as RGB resized to ``size`` = (height, width): uint8 (H, W, 3)."""
    try:
        with Image.open(path) as image:
            # PIL sizes are (width, height); convert before resizing, as the reference does.
            rgb = image.convert("RGB").resize((size[1], size[0]), Image.Resampling.BILINEAR)
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(
            f"{path}: unreadable image ({err}). Fix: replace or delete the file."
        ) from err
    return np.asarray(rgb, dtype=np.uint8)


def read_image_folder(
    root: str | os.PathLike[str], size: tuple[int, int] = (32, 32)
) -> FolderImages:
    """Read every image under ``root/<class_name>/`` resized to ``size`` = (height, width)."""
    if len(size) != 2 or min(size) < 1:
        raise DataError(f"size must be (height, width) with positive values; got {size!r}.")
    classes, samples = list_image_folder(root)
    images = np.empty((len(samples), size[0], size[1], 3), dtype=np.uint8)
    for index, (path, _) in enumerate(samples):
        images[index] = read_image(path, size)
    labels = np.array([class_id for _, class_id in samples], dtype=np.int64)
    paths = tuple(path for path, _ in samples)
    return FolderImages(images, labels, classes, paths)


def office_train_mask(count: int) -> np.ndarray:
    """Boolean mask over samples in folder order: True (train) when ``i % 10 <= 7``."""
    return np.arange(count) % 10 < OFFICE_TRAIN_REMAINDERS


def split_office(images: np.ndarray, labels: np.ndarray) -> Splits:
    """Apply RethinkFL's deterministic 80/20 split to samples in ImageFolder order."""
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"split_office: got {images.shape[0]} images but {labels.shape[0]} labels. "
            "Fix: pass one label per image."
        )
    train = office_train_mask(images.shape[0])
    return Splits(images[train], labels[train], images[~train], labels[~train])
