"""Readers for the on-disk formats of the benchmark domains: IDX, LIBSVM, HDF5, .mat and .npz.

Each reader returns plain numpy arrays: images as uint8 (N, H, W, C) and labels as the raw
array of the format (mapped to 0..9 where the format uses another convention), which the
caller passes to the label gate through :meth:`protofl.data.domain.Domain.from_arrays`.
A truncated or corrupt file raises :class:`DataError` naming the file and the problem.
Image folders live in :mod:`protofl.data.image_folders`.
"""

from __future__ import annotations

import bz2
import gzip
import math
import os
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from scipy.io import loadmat
from scipy.io.matlab import MatReadError

from protofl.errors import DataError, DataNotFoundError

USPS_PIXELS = 256  # 16 x 16
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
_REDOWNLOAD = "Fix: delete the file and download it again (or re-create it)."

# IDX type byte -> element type; multi-byte types are big-endian in the format.
_IDX_DTYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class Splits(NamedTuple):
    """The train and test arrays of one domain, in the order ``Domain.from_arrays`` takes."""

    x_train: np.ndarray  # [N, H, W, C] uint8
    y_train: np.ndarray  # [N] raw labels
    x_test: np.ndarray  # [M, H, W, C] uint8
    y_test: np.ndarray  # [M] raw labels


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """Return the content of ``path``, decompressed when it is gzip (sniffed, not by name)."""
    data = _read_raw(Path(path))
    if not data.startswith(b"\x1f\x8b"):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: corrupt or truncated gzip data ({err}). {_REDOWNLOAD}") from err


def _require_file(path: str | os.PathLike[str]) -> None:
    if not Path(path).is_file():
        raise DataNotFoundError(f"{path}: file not found.")


def _read_raw(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as err:
        raise DataNotFoundError(f"{path}: file not found.") from err
    except OSError as err:
        raise DataError(f"{path}: cannot read the file ({err}).") from err


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (MNIST's idx1 labels / idx3 images), plain or gzip-compressed."""
    return parse_idx(read_bytes(path), str(path))


def parse_idx(data: bytes, source: str) -> np.ndarray:
    """Parse IDX bytes into an array of the shape in its header; ``source`` names it in errors."""
    if len(data) < 4:
        raise DataError(
            f"{source}: not an IDX file: {len(data)} bytes, shorter than the 4-byte magic "
            f"number. {_REDOWNLOAD}"
        )
    dtype, ndim = _IDX_DTYPES.get(data[2]), data[3]
    if data[:2] != b"\x00\x00" or dtype is None or ndim == 0:
        raise DataError(
            f"{source}: bad IDX magic number 0x{data[:4].hex()}; expected 0x00000801 (idx1, "
            f"labels) or 0x00000803 (idx3, images). {_REDOWNLOAD}"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(
            f"{source}: IDX header truncated: {ndim} dimensions need {header} header bytes; "
            f"got {len(data)}. {_REDOWNLOAD}"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = math.prod(dims) * dtype.itemsize
    if len(data) - header != expected:
        raise DataError(
            f"{source}: IDX size mismatch: the header's dimensions {dims} need {expected} payload "
            f"bytes; got {len(data) - header}, so the file is truncated or corrupt. {_REDOWNLOAD}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="))  # native byte order, writable copy


def read_mnist(
    images_path: str | os.PathLike[str], labels_path: str | os.PathLike[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Read one MNIST split from its idx3 images and idx1 labels: ((N, 28, 28, 1), (N,))."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(
            f"{images_path}: expected idx3 uint8 images (N, H, W); got {images.dtype} data of "
            f"shape {images.shape}. Fix: check that images and labels files are not swapped."
        )
    if labels.ndim != 1:
        raise DataError(
            f"{labels_path}: expected idx1 labels (N,); got shape {labels.shape}. "
            "Fix: check that images and labels files are not swapped."
        )
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{images_path} has {images.shape[0]} images but {labels_path} has "
            f"{labels.shape[0]} labels. Fix: use the images and labels files of the same split."
        )
    return images[..., None], labels


def read_usps_libsvm(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read a USPS LIBSVM file (``usps.bz2`` / ``usps.t.bz2``): ((N, 16, 16, 1), (N,)) digits."""
    raw = _read_raw(Path(path))
    try:
        text = (bz2.decompress(raw) if raw.startswith(b"BZh") else raw).decode("ascii")
    except (OSError, EOFError, ValueError) as err:
        raise DataError(
            f"{path}: corrupt or truncated bz2 LIBSVM data ({err}). {_REDOWNLOAD}"
        ) from err
    return parse_usps_libsvm(text, str(path))


def parse_usps_libsvm(text: str, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Parse LIBSVM lines ``label idx:value ...`` (labels 1..10, values in [-1, 1])."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise DataError(f"{source}: no samples: the LIBSVM file is empty. {_REDOWNLOAD}")
    # Missing indices are LIBSVM's sparse zeros, so start from 0 rather than from -1.
    values = np.zeros((len(lines), USPS_PIXELS), dtype=np.float32)
    labels = np.empty(len(lines), dtype=np.int64)
    for row, line in enumerate(lines):
        labels[row] = _parse_libsvm_line(line, values[row], f"{source}, line {row + 1}")
    # torchvision's USPS conversion, in float32 like it, so pixels match it exactly.
    pixels = ((values + 1) / 2 * 255).astype(np.uint8)
    return pixels.reshape(-1, 16, 16, 1), labels - 1


def _parse_libsvm_line(line: str, out: np.ndarray, where: str) -> int:
    """Fill ``out`` with the line's pixel values and return its 1-based label."""
    # One split and one numpy conversion per line: about 3x faster than splitting each pair.
    tokens = line.replace(":", " ").split()
    try:
        if len(tokens) - 1 != 2 * line.count(":"):
            raise ValueError("every pixel must be written as index:value")
        label = int(tokens[0])
        pairs = np.array(tokens[1:], dtype=np.float64).reshape(-1, 2)
        if not np.array_equal(pairs[:, 0], np.round(pairs[:, 0])):
            raise ValueError("pixel indices must be whole numbers")
    except ValueError as err:
        raise DataError(
            f"{where}: expected 'label index:value ...'; got {line[:60]!r} ({err}). {_REDOWNLOAD}"
        ) from err
    indices = pairs[:, 0].astype(np.int64)
    # numpy parses strings to float32 through float64 too, so this matches torchvision's values.
    values = pairs[:, 1].astype(np.float32)
    if indices.size and (indices.min() < 1 or indices.max() > USPS_PIXELS):
        raise DataError(
            f"{where}: pixel indices must lie in 1..{USPS_PIXELS}; got {indices.min()}.."
            f"{indices.max()}. Fix: this reader expects 16x16 USPS images."
        )
    # A small tolerance for values written as e.g. 1.000001; clipping keeps uint8 from wrapping.
    if not np.all(np.abs(values) <= 1 + 1e-5):
        raise DataError(
            f"{where}: pixel values must lie in [-1, 1]; got {values.min()}..{values.max()}. "
            "Fix: this reader expects the LIBSVM USPS scaling."
        )
    out[indices - 1] = np.clip(values, -1, 1)
    return label


def read_usps_h5(path: str | os.PathLike[str]) -> Splits:
    """Read ``usps.h5`` (groups ``train``/``test`` with ``data`` (N, 256) in [0, 1], ``target``)."""
    h5py = _import_h5py(path)
    _require_file(path)
    try:
        with h5py.File(path, "r") as handle:
            arrays = {
                f"{group}/{key}": _h5_array(handle, group, key, path)
                for group in ("train", "test")
                for key in ("data", "target")
            }
    except OSError as err:
        raise DataError(f"{path}: not a readable HDF5 file ({err}). {_REDOWNLOAD}") from err
    x_train = _usps_unit_pixels(arrays["train/data"], f"{path}: train/data")
    x_test = _usps_unit_pixels(arrays["test/data"], f"{path}: test/data")
    return Splits(x_train, arrays["train/target"], x_test, arrays["test/target"])


def _import_h5py(path: str | os.PathLike[str]) -> Any:
    try:
        import h5py
    except ImportError as err:
        raise DataError(
            f"{path}: reading USPS .h5 files needs h5py, which is not installed. "
            "Fix: pip install 'protofl[h5]' (or pip install h5py), or use usps.npz / usps.bz2."
        ) from err
    return h5py


def _h5_array(handle: Any, group: str, key: str, path: str | os.PathLike[str]) -> np.ndarray:
    name = f"{group}/{key}"
    if name not in handle:
        found = _h5_names(handle)
        raise DataError(
            f"{path}: missing dataset '{name}'; expected train/data, train/target, test/data, "
            f"test/target; found {found}. Fix: use the standard usps.h5 layout."
        )
    return np.asarray(handle[name])


def _h5_names(handle: Any) -> list[str]:
    names: list[str] = []
    handle.visit(names.append)  # every group and dataset path, for the error message
    return sorted(names)


def _usps_unit_pixels(data: np.ndarray, where: str) -> np.ndarray:
    """Map (N, 256) values in [0, 1] to uint8 (N, 16, 16, 1) with floor(x * 255) in float64."""
    if data.ndim != 2 or data.shape[1] != USPS_PIXELS or data.dtype.kind not in "fiu":
        raise DataError(
            f"{where}: expected numbers of shape (N, {USPS_PIXELS}); got {data.dtype} of shape "
            f"{data.shape}. Fix: use the standard usps.h5 layout."
        )
    values = data.astype(np.float64)
    if not np.all((values >= 0) & (values <= 1)):
        raise DataError(
            f"{where}: expected pixel values in [0, 1]; got {np.nanmin(values)}.."
            f"{np.nanmax(values)} (or NaN). {_REDOWNLOAD}"
        )
    return np.floor(values * 255).astype(np.uint8).reshape(-1, 16, 16, 1)


def read_svhn_mat(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read ``train_32x32.mat`` / ``test_32x32.mat``: ((N, 32, 32, 3), (N,)) with 10 -> 0."""
    contents = _load_mat(path)
    missing = [key for key in ("X", "y") if key not in contents]
    if missing:
        found = sorted(key for key in contents if not key.startswith("__"))
        raise DataError(
            f"{path}: missing variable(s) {missing}; expected 'X' (32, 32, 3, N) and 'y' (N, 1); "
            f"found {found}. Fix: use the SVHN cropped-digits files (*_32x32.mat)."
        )
    images, labels = np.asarray(contents["X"]), np.asarray(contents["y"])
    if images.ndim != 4 or images.shape[2] != 3 or images.dtype != np.uint8:
        raise DataError(
            f"{path}: expected 'X' as uint8 (H, W, 3, N); got {images.dtype} of shape "
            f"{images.shape}. Fix: use the SVHN cropped-digits files (*_32x32.mat)."
        )
    count = images.shape[3]
    if labels.size != count or labels.ndim > 2:
        raise DataError(
            f"{path}: 'X' holds {count} images but 'y' has shape {labels.shape}. {_REDOWNLOAD}"
        )
    labels = labels.reshape(-1)
    # SVHN writes digit 0 as label 10; other values are left for the label gate to reject.
    return np.ascontiguousarray(images.transpose(3, 0, 1, 2)), np.where(labels == 10, 0, labels)


def _load_mat(path: str | os.PathLike[str]) -> dict[str, Any]:
    _require_file(path)
    try:
        contents: dict[str, Any] = loadmat(path, variable_names=("X", "y"))
    except NotImplementedError as err:  # MATLAB v7.3 files are HDF5, which loadmat refuses
        raise DataError(
            f"{path}: MATLAB v7.3 (HDF5) .mat files are not supported. Fix: use the original "
            "SVHN files, which are v5, or re-save with scipy.io.savemat."
        ) from err
    except (MatReadError, ValueError, TypeError, IndexError, OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: corrupt or truncated .mat file ({err}). {_REDOWNLOAD}") from err
    return contents


def read_npz(path: str | os.PathLike[str]) -> Splits:
    """Read the compact .npz format (x_train, y_train, x_test, y_test), without pickle."""
    _require_file(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            found = sorted(archive.files)
            arrays = {key: archive[key] for key in NPZ_KEYS if key in found}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise DataError(
            f"{path}: not a readable .npz file ({err}). Fix: re-create it with "
            "np.savez_compressed, without object arrays (allow_pickle=False)."
        ) from err
    missing = [key for key in NPZ_KEYS if key not in arrays]
    if missing:
        raise DataError(
            f"{path}: missing key(s) {missing}; expected {list(NPZ_KEYS)}; found {found}. "
            "Fix: save the file with np.savez_compressed(path, x_train=..., y_train=..., "
            "x_test=..., y_test=...)."
        )
    return Splits(*(arrays[key] for key in NPZ_KEYS))
