"""Writers of tiny files in every format protofl reads, shared by the format and source tests."""

from __future__ import annotations

import bz2
import gzip
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as IDX: magic 0x0000 08 <ndim>, big-endian dims, payload."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    data = idx_bytes(array)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def mnist_arrays(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
    return images, rng.integers(0, 10, size=count, dtype=np.uint8)


def write_mnist(directory: Path, *, spelling: str = "-", gz: bool = False, seed: int = 0) -> None:
    """Write the four MNIST files (train 5, test 3 samples) with ``-idx`` or ``.idx`` names."""
    suffix = ".gz" if gz else ""
    for split, count in (("train", 5), ("t10k", 3)):
        images, labels = mnist_arrays(count, seed + count)
        write_idx(directory / f"{split}-images{spelling}idx3-ubyte{suffix}", images)
        write_idx(directory / f"{split}-labels{spelling}idx1-ubyte{suffix}", labels)


def libsvm_text(labels: Sequence[int], rows: Sequence[dict[int, float]]) -> str:
    lines = []
    for label, row in zip(labels, rows, strict=True):
        pairs = " ".join(f"{index}:{value:g}" for index, value in sorted(row.items()))
        lines.append(f"{label} {pairs}")
    return "\n".join(lines) + "\n"


def write_usps_bz2(path: Path, labels: Sequence[int], rows: Sequence[dict[int, float]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bz2.compress(libsvm_text(labels, rows).encode("ascii")))
    return path


def write_usps_h5(
    path: Path, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]
) -> Path:
    import h5py  # optional (protofl[h5]); callers skip when it is missing

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        for group, (data, target) in (("train", train), ("test", test)):
            handle.create_dataset(f"{group}/data", data=data)
            handle.create_dataset(f"{group}/target", data=target)
    return path


def write_svhn_mat(path: Path, images_nhwc: np.ndarray, labels: np.ndarray) -> Path:
    """Write SVHN's layout: X (H, W, 3, N) uint8 and y (N, 1) with digit 0 stored as 10."""
    path.parent.mkdir(parents=True, exist_ok=True)
    stored = np.where(labels == 0, 10, labels).astype(np.uint8).reshape(-1, 1)
    scipy.io.savemat(path, {"X": images_nhwc.transpose(1, 2, 3, 0), "y": stored})
    return path


def write_npz(
    path: Path, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


def color_of(class_id: int, index: int) -> tuple[int, int, int]:
    """A distinct solid colour per (class, file) so tests can tell images apart."""
    return (20 * class_id + 5, 10 * index + 3, 200 - 7 * class_id)


def write_solid_image(
    path: Path, color: tuple[int, int, int], size: tuple[int, int] = (6, 4)
) -> Path:
    """A solid RGB image of ``size`` = (width, height); resizing a solid image keeps it exact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def write_class_folders(
    root: Path, counts: Sequence[int], ext: str = ".png"
) -> list[tuple[int, int]]:
    """Write ``counts[c]`` images into class folder ``c<c>``; return (class, index) in order."""
    order = []
    for class_id, count in enumerate(counts):
        for index in range(count):
            name = f"img_{index:03d}{ext}"
            write_solid_image(root / f"c{class_id}" / name, color_of(class_id, index))
            order.append((class_id, index))
    return order
