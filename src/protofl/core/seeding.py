"""One seed in the config; every random stream is derived from it by a stable path.

``derive_seed(seed, "client", 3, "round", 7)`` always gives the same number, independent of
what else ran before, so clients and rounds can be reordered, resumed or run on other
machines (Flower) and still draw the same batches and augmentations.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator

import numpy as np
import torch


def derive_seed(seed: int, *path: int | str) -> int:
    """A 63-bit seed determined by ``seed`` and the labels in ``path``."""
    words = [seed & 0xFFFFFFFF, seed >> 32]
    for item in path:
        words.append(zlib.crc32(item.encode()) if isinstance(item, str) else int(item))
    state = np.random.SeedSequence(words).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1


def torch_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


def numpy_generator(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


@contextlib.contextmanager
def seeded_torch(seed: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Run a block with torch's global RNG seeded, restoring the previous state after.

    For code we do not control that draws from the global RNG (module initialisers,
    dropout in a user's model); our own draws use explicit generators.
    """
    device = torch.device(device)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
