"""The embedded default benchmark: four 10-class digit domains built offline, no download.

``protofl run`` trains on this benchmark when no other is named. It is built by protofl
itself, deterministically from a dataset seed, and is *not* a published benchmark: results
on it are not comparable with the Digits (MNIST, USPS, SVHN, SynthDigits) numbers of the
FPL paper. It exists so that protofl works out of the box and shows a real domain shift.
All images are 32 x 32. The rendered domains have exactly equal class counts; the
handwritten one has 50 test images per class and 124 to 133 training images per class,
since scikit-learn's set is not quite balanced.

Domains, in :data:`EMBEDDED_DOMAINS` order:

``handwritten``
    The copy of the UCI optdigits test set that scikit-learn ships
    (``sklearn.datasets.load_digits``): 1,797 digits handwritten by 13 people, whose
    32 x 32 binary scans were reduced to 8 x 8 counts (17 grey levels); protofl upscales
    them back to 32 x 32 by bilinear interpolation. White on black, one grey channel. Split
    stratified into 1,297 train and 500 test images (50 per class); the seed only
    changes the split. The only domain made of real handwriting.
``synthetic``
    SynthDigits-like: digits typeset in the font Pillow ships (Aileron, in four weights
    and a hollow outline), scaled, rotated, sheared, stretched and shifted, in a random
    colour on a random gradient with blotches and sometimes stripes. Three in four images
    show parts of neighbouring digits, as SVHN house-number crops do; some have a drop
    shadow; all get random blur and noise. 1,200 train and 400 test images, RGB. The most
    varied domain and the hardest to learn.
``strokes``
    Pen drawings: a hand-made skeleton per digit (polylines and elliptic arcs, one to three
    written forms per digit, such as 1 with or without a flag and foot, an open or closed
    4, 7 with or without a bar), each stroke shifted and the whole shape smoothly bent per
    image, drawn with a random pen width, slant, size and ink (black, blue, pencil) with
    uneven pressure on light, tinted, blotchy paper, some of it ruled. Stylised, not real
    handwriting. 1,200 train and 400 test images, RGB.
``segments``
    Seven-segment LED displays: coloured segments with a glow on dark panels, unlit segments
    faintly visible on most, random slant, size, segment thickness and gaps, the alternative
    forms of 6, 7 and 9, and on either side, half the time, part of a neighbouring digit.
    1,200 train and 400 test images, RGB.
"""

from __future__ import annotations

import difflib
import zlib
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np

from protofl.data import embedded_render as draw
from protofl.data.domain import Domain
from protofl.data.embedded_scenes import render_segments, render_strokes, render_synthetic
from protofl.errors import ConfigError

EMBEDDED_DOMAINS: tuple[str, ...] = ("handwritten", "synthetic", "strokes", "segments")
NUM_CLASSES = 10
RENDERED_TRAIN_SIZE = 1200
RENDERED_TEST_SIZE = 400
HANDWRITTEN_TEST_PER_CLASS = 50

_Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
_RENDERERS: dict[str, Callable[[np.random.Generator, np.ndarray], np.ndarray]] = {
    "synthetic": render_synthetic,
    "strokes": render_strokes,
    "segments": render_segments,
}


def build_embedded_domain(name: str, seed: int = 0) -> Domain:
    """Build one embedded domain; the same ``(name, seed)`` always gives the same images.

    ``seed`` is the dataset seed, independent of any training seed. Each domain is rendered
    once per process and cached read-only; every call returns fresh, writable copies, so
    editing them cannot change what the next caller gets (and ``torch.from_numpy`` accepts
    them without its warning about read-only arrays).
    """
    _check_name(name)
    _check_seed(seed)
    x_train, y_train, x_test, y_test = (a.copy() for a in _cached_arrays(name, int(seed)))
    return Domain.from_arrays(name, x_train, y_train, x_test, y_test, num_classes=NUM_CLASSES)


def build_embedded_domains(names: Sequence[str] | None = None, seed: int = 0) -> list[Domain]:
    """Build the named embedded domains (all of them by default) in the order given."""
    if names is None:
        names = EMBEDDED_DOMAINS
    if isinstance(names, str):
        raise ConfigError(
            f"embedded domain names: expected a list of names; got the single string {names!r}. "
            f"Fix: pass [{names!r}]."
        )
    if len(names) == 0:
        raise ConfigError(
            f"embedded domain names: expected at least one of {', '.join(EMBEDDED_DOMAINS)}; "
            "got an empty list. Fix: pass None for all of them."
        )
    duplicates = sorted({n for n in names if list(names).count(n) > 1})
    if duplicates:
        raise ConfigError(
            f"embedded domain names: each domain may appear once; got {list(names)!r} with "
            f"{duplicates} repeated. Fix: list each domain once."
        )
    for name in names:
        _check_name(name)
    return [build_embedded_domain(name, seed) for name in names]


def domain_generator(name: str, seed: int) -> np.random.Generator:
    """Return the generator of one domain, seeded from (seed, name) the same way everywhere.

    CRC-32 of the name rather than ``hash()``, which Python salts per process.
    """
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(name.encode())]))


def balanced_labels(rng: np.random.Generator, count: int) -> np.ndarray:
    """Return ``count`` int64 labels, every class within one of count / 10, shuffled."""
    return rng.permutation(np.arange(count, dtype=np.int64) % NUM_CLASSES)


def _check_name(name: object) -> None:
    if isinstance(name, str) and name in EMBEDDED_DOMAINS:
        return
    close = difflib.get_close_matches(str(name), EMBEDDED_DOMAINS, n=1)
    hint = f"Did you mean {close[0]!r}? " if close else ""
    raise ConfigError(
        f"unknown embedded domain {name!r}. {hint}Valid names: {', '.join(EMBEDDED_DOMAINS)}."
    )


def _check_seed(seed: object) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(
            f"embedded dataset seed: expected a non-negative integer; got {seed!r}. "
            "Fix: pass e.g. seed=0."
        )


def render_embedded_arrays(name: str, seed: int) -> _Arrays:
    """Render one domain from scratch, bypassing the cache: (x_train, y_train, x_test, y_test).

    Plain numpy arrays, not yet through the label gate; use :func:`build_embedded_domain`
    unless you are checking the builder itself (for example that it is deterministic).
    """
    _check_name(name)
    _check_seed(seed)
    rng = domain_generator(name, seed)
    return _handwritten(rng) if name == "handwritten" else _rendered(name, rng)


@lru_cache(maxsize=16)
def _cached_arrays(name: str, seed: int) -> _Arrays:
    arrays = render_embedded_arrays(name, seed)
    for array in arrays:
        array.flags.writeable = False  # shared by every later call: callers get copies
    return arrays


def _rendered(name: str, rng: np.random.Generator) -> _Arrays:
    y_train = balanced_labels(rng, RENDERED_TRAIN_SIZE)
    y_test = balanced_labels(rng, RENDERED_TEST_SIZE)
    images = _RENDERERS[name](rng, np.concatenate([y_train, y_test]))
    return images[:RENDERED_TRAIN_SIZE], y_train, images[RENDERED_TRAIN_SIZE:], y_test


def _handwritten(rng: np.random.Generator) -> _Arrays:
    from sklearn.datasets import load_digits  # import here: scikit-learn is slow to import

    digits = load_digits()
    labels = np.asarray(digits.target, dtype=np.int64)
    # 0..16 grey levels, upscaled; values stay in [0, 1] because interpolation is convex.
    images = draw.to_uint8(draw.resize(np.asarray(digits.images) / 16.0))[..., None]
    test = np.zeros(labels.shape[0], dtype=bool)
    for label in range(NUM_CLASSES):
        members = rng.permutation(np.flatnonzero(labels == label))
        test[members[:HANDWRITTEN_TEST_PER_CLASS]] = True
    # Shuffle within each split so that consumers never see one class in a long run.
    train_rows = rng.permutation(np.flatnonzero(~test))
    test_rows = rng.permutation(np.flatnonzero(test))
    return images[train_rows], labels[train_rows], images[test_rows], labels[test_rows]
