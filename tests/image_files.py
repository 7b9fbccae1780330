"""Tiny image files written by the tests (Pillow), in any mode and format, for the folder
benchmarks: each class has its own colour so a run can learn it, each domain its own tint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SIZE = (12, 10)  # (width, height): not square, so the loader's resize is exercised


def class_colour(label: int, tint: int = 0) -> np.ndarray:
    """An RGB colour per class (bright channel = label % 3), shifted per domain."""
    colour = np.full(3, 40 + 20 * (tint % 3), dtype=np.int64)
    colour[label % 3] = 200 + 10 * (label // 3 % 5)
    return colour.clip(0, 255)


def write_image(
    path: Path, label: int = 0, tint: int = 0, seed: int = 0, mode: str = "RGB"
) -> Path:
    """One small noisy image of its class's colour, saved in the format of ``path``'s suffix."""
    rng = np.random.default_rng(seed)
    pixels = class_colour(label, tint) + rng.integers(-15, 16, (SIZE[1], SIZE[0], 3))
    image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
    if mode == "L":
        image = image.convert("L")
    elif mode == "P":
        image = image.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    elif mode == "RGBA":
        image = image.convert("RGBA")
    elif mode == "I;16":
        image = Image.fromarray(np.asarray(image.convert("L"), dtype=np.uint16) * 257)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def write_class_folders(
    root: Path,
    domains: dict[str, list[str]],
    per_class: int = 5,
    suffix: str = ".jpg",
    split: bool = False,
) -> Path:
    """``root/<domain>/<class>/<i><suffix>`` (or ``root/<domain>/{train,test}/<class>/...``,
    4 train and 1 test per class, with ``split``); class ids follow sorted names overall."""
    classes = sorted({c for names in domains.values() for c in names})
    for tint, (domain, names) in enumerate(domains.items()):
        for name in names:
            label = classes.index(name)
            for i in range(per_class):
                part = ("test" if i == per_class - 1 else "train") if split else ""
                path = root / domain / part / name / f"{i}{suffix}"
                write_image(path, label, tint, seed=hash((domain, name, i)) % 2**32)
    return root
