"""Decoding image files to uint8 RGB squares, cached on disk under a key made of their content.

The key is a SHA-256 over the decoder's version, the target size and every file's own
SHA-256 in order, so a second run with the same files does not decode again, and changing,
adding, removing or reordering any file gives another key (the old entry is simply not
used). The cache lives in ``<cache_dir>/decoded/`` (``cache_dir`` = the ``cache_dir``
setting, else ``$PROTOFL_CACHE_DIR``, else ``~/.cache/protofl``): outside any repository.
A run still reads every file once to hash it; hashing is far cheaper than decoding.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from protofl.errors import DataError

logger = logging.getLogger(__name__)

# Bump whenever decoding changes (modes, resampling, background), so stale entries go unused.
DECODER_VERSION = 1
CACHE_SUBDIR = "decoded"
_WHITE = (255, 255, 255)


@dataclass(frozen=True)
class DecodedImages:
    """The decoded files in order, with the ones Pillow could not read left out."""

    images: np.ndarray  # [K, S, S, 3] uint8, K = kept.sum()
    kept: np.ndarray  # [N] bool, one per file: decoded (True) or unreadable (False)
    unreadable: tuple[str, ...]  # the unreadable files with the reason, for the report


def decode_image(data: bytes, size: int, source: str) -> np.ndarray:
    """One encoded image -> uint8 (size, size, 3); raises :class:`DataError` naming ``source``."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # a truncated file fails here rather than half-decoded later
            rgb = as_rgb(image)
            resized = rgb.resize((size, size), Image.Resampling.BILINEAR)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise DataError(f"{source}: unreadable image ({err}).") from err
    return np.asarray(resized, dtype=np.uint8)


def as_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB: transparency over white (sketches and clip art are drawn on
    white, and black would invent dark shapes), 16-bit grey scaled rather than clipped."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*_WHITE, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode.startswith("I;16"):
        grey = np.asarray(image, dtype=np.float64) / 257.0  # 0..65535 -> 0..255
        return Image.fromarray(grey.round().astype(np.uint8)).convert("RGB")
    if image.mode in ("I", "F"):  # no fixed range: stretch the image's own min..max
        values = np.asarray(image, dtype=np.float64)
        low, span = values.min(), max(float(np.ptp(values)), 1e-12)
        grey = (values - low) / span * 255.0
        return Image.fromarray(grey.round().astype(np.uint8)).convert("RGB")
    return image.convert("RGB")


def content_key(paths: Sequence[Path], size: int) -> str:
    """The cache key of ``paths`` decoded at ``size``: their bytes, order and the decoder."""
    digest = hashlib.sha256(f"protofl-decoder-{DECODER_VERSION}-size-{size}".encode())
    for path in paths:
        digest.update(hashlib.sha256(_read(path)).digest())
    return digest.hexdigest()


def decode_files(
    paths: Sequence[Path],
    size: int,
    cache_dir: Path | None,
    skip_unreadable: bool = False,
) -> DecodedImages:
    """Decode ``paths`` (from the cache when their content was decoded before at ``size``).

    An unreadable file is an error naming it, unless ``skip_unreadable``: then it is left
    out, logged and listed in the result. ``cache_dir`` None decodes without caching.
    """
    entry = None
    if cache_dir is not None:
        entry = cache_dir / CACHE_SUBDIR / f"{content_key(paths, size)}.npz"
        cached = _load_entry(entry)
        if cached is not None:
            logger.info("%d images from the cache %s", len(paths), entry)
            return _checked(cached, skip_unreadable)
    decoded = _decode_all(paths, size)
    if entry is not None:
        _save_entry(entry, decoded)
    return _checked(decoded, skip_unreadable)


def _decode_all(paths: Sequence[Path], size: int) -> DecodedImages:
    images = np.zeros((len(paths), size, size, 3), dtype=np.uint8)
    kept = np.ones(len(paths), dtype=bool)
    unreadable = []
    for index, path in enumerate(paths):
        try:
            images[index] = decode_image(_read(path), size, str(path))
        except DataError as err:
            kept[index] = False
            unreadable.append(str(err))
    return DecodedImages(images[kept], kept, tuple(unreadable))


def _checked(decoded: DecodedImages, skip_unreadable: bool) -> DecodedImages:
    """Refuse unreadable files unless asked to skip them (checked on cache hits too, so a
    cache written by a skipping run does not hide a broken file from a strict one)."""
    if not decoded.unreadable:
        return decoded
    count = len(decoded.unreadable)
    if not skip_unreadable:
        shown = "\n  ".join(decoded.unreadable[:10])
        more = f"\n  ... and {count - 10} more" if count > 10 else ""
        raise DataError(
            f"{count} unreadable image file(s):\n  {shown}{more}\nFix: replace or delete "
            "them, or pass --set skip_unreadable_images=true to leave them out (counted in "
            "config.json)."
        )
    logger.warning("skipped %d unreadable image file(s): %s", count, decoded.unreadable[0])
    return decoded


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot read the file ({err}).") from err


def _load_entry(entry: Path) -> DecodedImages | None:
    if not entry.is_file():
        return None
    try:
        with np.load(entry, allow_pickle=False) as archive:
            reasons = tuple(str(r) for r in archive["unreadable"])
            return DecodedImages(archive["images"], archive["kept"], reasons)
    except (OSError, ValueError, KeyError) as err:  # a damaged entry is decoded again
        logger.warning("ignoring the damaged cache entry %s (%s)", entry, err)
        return None


def _save_entry(entry: Path, decoded: DecodedImages) -> None:
    """Write to a temporary name and rename, so a crash never leaves a half-written entry."""
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(prefix=".", suffix=".npz", dir=entry.parent)
        with os.fdopen(handle, "wb") as out:
            np.savez(
                out,
                images=decoded.images,
                kept=decoded.kept,
                unreadable=np.array(decoded.unreadable, dtype=str),
            )
        os.replace(temp_name, entry)
    except OSError as err:  # a read-only or full disk costs speed, not the run
        logger.warning("could not write the image cache %s (%s)", entry, err)
        with contextlib.suppress(OSError, UnboundLocalError):
            os.unlink(temp_name)
