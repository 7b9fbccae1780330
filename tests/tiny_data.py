"""Small, learnable data and models made by the tests themselves (no downloads)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from protofl.data import ClientArrays

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def blob_images(
    count: int, shift: int, seed: int, classes: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 16x16 RGB images whose brightness pattern encodes the class; ``shift`` moves
    the whole domain's colour, so domains differ while classes stay learnable."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, count)
    images = rng.normal(0, 20, (count, 16, 16, 3))
    rows = (labels * 4)[:, None] + np.arange(4)  # class c lights rows 4c..4c+3
    images[np.arange(count)[:, None], rows, :, :] += 120
    images[..., shift % 3] += 60
    return images.clip(0, 255).astype(np.uint8), labels


def tiny_clients(per_client: int = 48, seed: int = 0) -> tuple[list[ClientArrays], dict[str, Any]]:
    clients, tests = [], {}
    for d, domain in enumerate(("red", "green")):
        for k in range(2):
            x, y = blob_images(per_client, d, seed + 10 * d + k)
            clients.append(ClientArrays(x, y, domain))
        tests[domain] = blob_images(64, d, seed + 100 + d)
    return clients, tests


class TinyNet(nn.Module):
    """Conv features (8-d, post-ReLU pooled) and a linear head; fast enough for tests."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.classifier = nn.Linear(8, classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3))

    def head(self, z: torch.Tensor) -> torch.Tensor:
        return self.classifier(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def shared_data_or_skip(*names: str) -> Path:
    """The shared benchmark folder, or skip when the files are not on this machine."""
    import os

    folder = Path(os.environ.get("PROTOFL_DATA_DIR", SHARED_DATA))
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        pytest.skip(f"real benchmark files {missing} not found in {folder} (set PROTOFL_DATA_DIR)")
    return folder
