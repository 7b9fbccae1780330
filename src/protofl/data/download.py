"""Checksummed downloads of the benchmark files that have a public home: MNIST, USPS and SVHN.

A file is written to a temporary name next to its destination and renamed only after its MD5
matches, so an interrupted or corrupt download never leaves a file that looks complete.
Mirrors are tried in order. SYN and Office-Caltech-10 have no stable public URL and are not
downloaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import tempfile
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from protofl.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

Opener = Callable[[str], Any]  # url -> a context manager yielding a binary file-like object
_CHUNK_BYTES = 1 << 20
_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Resource:
    """One file to download: its name on disk, its URLs in order of preference, its MD5."""

    filename: str
    urls: tuple[str, ...]
    md5: str


def _mnist(filename: str, md5: str) -> Resource:
    # The S3 mirror first: yann.lecun.com has answered HTTP 403 since 2024 (e.g. issues
    # red-data-tools/red-datasets#195, ludwig-ai/ludwig#4009).
    mirrors = (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    )
    return Resource(filename, tuple(mirror + filename for mirror in mirrors), md5)


_LIBSVM = "https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/multiclass/"
_SVHN = "http://ufldl.stanford.edu/housenumbers/"

RESOURCES: dict[str, tuple[Resource, ...]] = {
    # MD5s as listed in pytorch/vision torchvision/datasets/mnist.py (MNIST.resources,
    # commit 01977a187961243eaf66ead246fd92a5c6c7ccfc).
    "mnist": (
        _mnist("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        _mnist("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
        _mnist("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
        _mnist("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
    ),
    # URLs and MD5s as listed in pytorch/vision torchvision/datasets/usps.py (USPS.split_list,
    # commit 15fc26c7008e792893b7dba1581e4cf080933f73).
    "usps": (
        Resource("usps.bz2", (_LIBSVM + "usps.bz2",), "ec16c51db3855ca6c91edd34d0e9b197"),
        Resource("usps.t.bz2", (_LIBSVM + "usps.t.bz2",), "8ea070ee2aca1ac39742fdd1ef5ed118"),
    ),
    # URLs and MD5s as listed in pytorch/vision torchvision/datasets/svhn.py (SVHN.split_list,
    # commit 0318698f0775df59b7cec73851dd499243ca1bcd).
    "svhn": (
        Resource(
            "train_32x32.mat", (_SVHN + "train_32x32.mat",), "e26dedcc434d2e4c54c9b2d4a06d8373"
        ),
        Resource("test_32x32.mat", (_SVHN + "test_32x32.mat",), "eb5a983be6a315427106f1b164d9cef3"),
    ),
}


def md5_of(path: str | os.PathLike[str]) -> str:
    """Return the hex MD5 of a file, read in chunks."""
    return digest_of(path, "md5")


def digest_of(path: str | os.PathLike[str], algorithm: str) -> str:
    """Return the hex digest (``md5``, ``sha256``) of a file, read in chunks."""
    digest = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _urlopen(url: str) -> Any:
    request = urllib.request.Request(url, headers={"User-Agent": "protofl"})
    return urllib.request.urlopen(request, timeout=_TIMEOUT_S)


def fetch(
    urls: Sequence[str],
    dest: str | os.PathLike[str],
    md5: str,
    *,
    opener: Opener = _urlopen,
    algorithm: str = "md5",
) -> Path:
    """Download ``dest`` from the first of ``urls`` that yields a file with the given MD5
    (or, with ``algorithm="sha256"``, the given SHA-256: the parameter is the hex digest).

    An existing ``dest`` with the right MD5 is kept. A network failure or a checksum mismatch
    moves on to the next mirror; when none works, :class:`DataError` lists every failure. The
    file appears at ``dest`` only once verified.
    """
    dest = Path(dest)
    if not urls:
        raise ConfigError(f"fetch: no URL given for {dest}. Fix: pass at least one URL.")
    if dest.is_file():
        if digest_of(dest, algorithm) == md5:
            logger.info("%s already present, checksum verified", dest)
            return dest
        logger.warning("%s has the wrong checksum; downloading it again", dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    for url in urls:
        failure = _fetch_one(url, dest, md5, opener, algorithm)
        if failure is None:
            return dest
        logger.warning("download of %s failed: %s", url, failure)
        failures.append(f"{url}: {failure}")
    raise DataError(
        f"could not download {dest.name} to {dest.parent}:\n  "
        + "\n  ".join(failures)
        + f"\nFix: check the network, or download the file yourself to {dest} "
        f"(expected {algorithm.upper()} {md5})."
    )


def _fetch_one(url: str, dest: Path, md5: str, opener: Opener, algorithm: str) -> str | None:
    """Download one URL to ``dest`` via a temporary file; return why it failed, or None."""
    logger.info("downloading %s to %s", url, dest)
    handle, temp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    temp_path = Path(temp_name)
    try:
        with os.fdopen(handle, "wb") as out:
            try:
                got = _copy_with_digest(opener, url, out, algorithm)
            except (OSError, http.client.HTTPException, ValueError) as err:
                return f"{type(err).__name__}: {err}"
        if got != md5:
            name = algorithm.upper()
            return f"checksum mismatch: expected {name} {md5}, got {got}; the file was deleted"
        os.replace(temp_path, dest)
        logger.info("saved %s (%d bytes)", dest, dest.stat().st_size)
        return None
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp_path.unlink()  # no-op after a successful rename


def _copy_with_digest(opener: Opener, url: str, out: IO[bytes], algorithm: str) -> str:
    digest = hashlib.new(algorithm, usedforsecurity=False)
    with opener(url) as response:
        for chunk in iter(lambda: response.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def download_domain(
    name: str, directory: str | os.PathLike[str], *, opener: Opener = _urlopen
) -> Path:
    """Download every file of domain ``name`` (mnist, usps, svhn) into ``directory``."""
    if name not in RESOURCES:
        raise ConfigError(
            f"domain {name!r} cannot be downloaded; downloadable: {sorted(RESOURCES)}. "
            "Fix: get SYN and Office-Caltech-10 by hand and pass their folder as the data dir."
        )
    directory = Path(directory)
    for resource in RESOURCES[name]:
        fetch(resource.urls, directory / resource.filename, resource.md5, opener=opener)
    return directory
