"""Finding a domain's files in a data directory (or the download cache) and loading a Domain.

Lookup order for a domain: its compact ``.npz`` file in the data directory, then the standard
formats in their common layouts there, then, only when asked and only for MNIST, USPS and
SVHN, the download cache (downloading into it). Images come back at native resolution and
channels (folders at 32x32x3); resizing to the benchmark's input size happens elsewhere.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from protofl.data.domain import Domain
from protofl.data.download import RESOURCES, download_domain
from protofl.data.formats import (
    Splits,
    read_mnist,
    read_npz,
    read_svhn_mat,
    read_usps_h5,
    read_usps_libsvm,
)
from protofl.data.image_folders import FolderImages, read_image_folder, split_office
from protofl.errors import ConfigError, DataError, DataNotFoundError, LabelError, LabelTypeError

logger = logging.getLogger(__name__)

DATA_DIR_ENV = "PROTOFL_DATA_DIR"
CACHE_DIR_ENV = "PROTOFL_CACHE_DIR"
DIGITS_DOMAINS = ("mnist", "usps", "svhn", "syn")
OFFICE_DOMAINS = ("caltech", "amazon", "webcam", "dslr")
NUM_CLASSES = 10
FOLDER_IMAGE_SIZE = (32, 32)  # (height, width) for SYN and Office folders, as RethinkFL
SYN_SAMPLE_NPZ = "syn_sample_prasunroy.npz"

_SYN_SOURCE = (
    "SYN cannot be downloaded: it is the Kaggle 'prasunroy/synthetic-digits' set (the 'syn' "
    "folder of RethinkFL's Digits data); put it at syn/train/<digit>/ and syn/val/<digit>/, "
    "or pack it as syn.npz (x_train, y_train, x_test, y_test)."
)
_OFFICE_SOURCE = (
    "Office-Caltech-10 cannot be downloaded: use the office_caltech_10 images distributed "
    "with FedBN (the Gong et al. CVPR 2012 selection of Office-31 and Caltech-256) laid out "
    "as Office_Caltech_10/<domain>/<class>/*.jpg, or the packed office_<domain>.npz files."
)


@dataclass(frozen=True)
class _Layout:
    """One way a domain can sit on disk: the files it needs, each with its accepted names."""

    description: str  # shown in the not-found message, relative to the searched directory
    needs: tuple[tuple[Path, ...], ...]  # per needed file, its spellings in preference order
    read: Callable[[list[Path]], Splits]

    def find(self) -> list[Path] | None:
        """Return the first existing spelling of every needed file, or None if one is missing."""
        found = []
        for spellings in self.needs:
            hit = next((path for path in spellings if path.exists()), None)
            if hit is None:
                return None
            found.append(hit)
        return found


def resolve_data_dir(data_dir: str | os.PathLike[str] | None) -> Path | None:
    """The explicit ``data_dir`` if given, else ``$PROTOFL_DATA_DIR``, else None."""
    chosen = os.fspath(data_dir) if data_dir is not None else ""
    chosen = chosen or os.environ.get(DATA_DIR_ENV, "")  # an empty argument counts as unset
    return Path(chosen).expanduser() if chosen else None


def default_cache_dir() -> Path:
    """Where downloads go: ``$PROTOFL_CACHE_DIR``, else ``~/.cache/protofl``."""
    chosen = os.environ.get(CACHE_DIR_ENV, "")
    return Path(chosen).expanduser() if chosen else Path.home() / ".cache" / "protofl"


def load_digits_domain(
    name: str,
    data_dir: str | os.PathLike[str] | None,
    *,
    download: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Domain:
    """Load one Digits domain (mnist, usps, svhn, syn) from ``data_dir`` or the cache.

    ``data_dir`` None falls back to ``$PROTOFL_DATA_DIR``. With ``download=True``, MNIST,
    USPS and SVHN not found there are fetched (checksummed) into ``cache_dir`` (default
    :func:`default_cache_dir`).
    """
    _check_name(name, DIGITS_DOMAINS, "Digits")
    directory = resolve_data_dir(data_dir)
    if directory is not None and directory.is_dir():
        domain = _load_first(name, domain_layouts(name, directory))
        if domain is not None:
            return domain
    if download and name in RESOURCES:
        cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        domain = _load_first(name, domain_layouts(name, download_domain(name, cache / name)))
        if domain is not None:
            return domain
    raise DataNotFoundError(_not_found_message(name, directory, data_dir, download))


def load_office_domain(name: str, data_dir: str | os.PathLike[str] | None) -> Domain:
    """Load one Office-Caltech-10 domain (caltech, amazon, webcam, dslr) from ``data_dir``.

    From image folders, samples go to train or test by RethinkFL's rule (``i % 10 <= 7`` in
    folder order), the rule the packed ``office_<domain>.npz`` files were built with.
    """
    _check_name(name, OFFICE_DOMAINS, "Office-Caltech-10")
    directory = resolve_data_dir(data_dir)
    if directory is not None and directory.is_dir():
        domain = _load_first(name, domain_layouts(name, directory))
        if domain is not None:
            return domain
    raise DataNotFoundError(_not_found_message(name, directory, data_dir, download=False))


def domain_layouts(name: str, directory: Path) -> list[_Layout]:
    """Every layout searched for domain ``name`` under ``directory``, in lookup order."""
    if name in OFFICE_DOMAINS:
        return [_npz_layout(directory, f"office_{name}.npz"), *_office_layouts(directory, name)]
    builders: dict[str, Callable[[Path], list[_Layout]]] = {
        "mnist": _mnist_layouts,
        "usps": _usps_layouts,
        "svhn": _svhn_layouts,
        "syn": _syn_layouts,
    }
    return [_npz_layout(directory, f"{name}.npz"), *builders[name](directory)]


def _load_first(name: str, layouts: Sequence[_Layout]) -> Domain | None:
    """Load the domain from the first layout whose files all exist, or return None."""
    for layout in layouts:
        paths = layout.find()
        if paths is None:
            continue
        files = ", ".join(str(path) for path in paths)
        logger.info("loading domain %r from %s", name, files)
        splits = layout.read(paths)
        try:
            return Domain.from_arrays(name, *splits, num_classes=NUM_CLASSES)
        except (DataError, LabelError, LabelTypeError) as err:
            # The gate names the array (mnist.y_train); add the file it came from.
            raise type(err)(f"{files}: {err}") from err
    return None


def _npz_layout(directory: Path, filename: str) -> _Layout:
    return _Layout(filename, ((directory / filename,),), lambda paths: read_npz(paths[0]))


def _relative(sub: str, name: str) -> str:
    return name if sub == "." else f"{sub}/{name}"


def _mnist_layouts(directory: Path) -> list[_Layout]:
    def spellings(base: Path, split: str, kind: str, dims: int) -> tuple[Path, ...]:
        stems = (f"{split}-{kind}-idx{dims}-ubyte", f"{split}-{kind}.idx{dims}-ubyte")
        return tuple(base / f"{stem}{suffix}" for stem in stems for suffix in ("", ".gz"))

    def layout(sub: str) -> _Layout:
        base = directory / sub
        files = [("train", "images", 3), ("train", "labels", 1)]
        files += [("t10k", "images", 3), ("t10k", "labels", 1)]
        pattern = "{train,t10k}-{images,labels}-idx{3,1}-ubyte[.gz] (or *.idx3-ubyte)"
        needs = tuple(spellings(base, *file) for file in files)
        return _Layout(_relative(sub, pattern), needs, _read_mnist_files)

    return [layout(sub) for sub in (".", "mnist", "MNIST/raw")]


def _read_mnist_files(paths: list[Path]) -> Splits:
    x_train, y_train = read_mnist(paths[0], paths[1])
    x_test, y_test = read_mnist(paths[2], paths[3])
    return Splits(x_train, y_train, x_test, y_test)


def _usps_layouts(directory: Path) -> list[_Layout]:
    layouts = []
    for sub in (".", "usps", "USPS"):
        base = directory / sub
        bz2_needs = ((base / "usps.bz2",), (base / "usps.t.bz2",))
        bz2_description = f"{_relative(sub, 'usps.bz2')} + {_relative(sub, 'usps.t.bz2')}"
        layouts.append(_Layout(bz2_description, bz2_needs, _read_usps_bz2))
        h5_needs = ((base / "usps.h5",),)
        layouts.append(_Layout(_relative(sub, "usps.h5"), h5_needs, lambda p: read_usps_h5(p[0])))
    return layouts


def _read_usps_bz2(paths: list[Path]) -> Splits:
    return Splits(*read_usps_libsvm(paths[0]), *read_usps_libsvm(paths[1]))


def _svhn_layouts(directory: Path) -> list[_Layout]:
    layouts = []
    for sub in (".", "svhn", "SVHN"):
        needs = ((directory / sub / "train_32x32.mat",), (directory / sub / "test_32x32.mat",))
        description = _relative(sub, "{train,test}_32x32.mat")
        layouts.append(_Layout(description, needs, _read_svhn_files))
    return layouts


def _read_svhn_files(paths: list[Path]) -> Splits:
    return Splits(*read_svhn_mat(paths[0]), *read_svhn_mat(paths[1]))


def _syn_layouts(directory: Path) -> list[_Layout]:
    needs = ((directory / "syn" / "train",), (directory / "syn" / "val",))
    return [_Layout("syn/train/<digit>/*, syn/val/<digit>/*", needs, _read_syn_folders)]


def _read_syn_folders(paths: list[Path]) -> Splits:
    train = _read_ten_class_folder(paths[0])
    test = _read_ten_class_folder(paths[1])
    if train.classes != test.classes:
        raise DataError(
            f"{paths[0]} and {paths[1]} have different class folders: {list(train.classes)} vs "
            f"{list(test.classes)}. Fix: give both splits the same class folder names."
        )
    return Splits(train.images, train.labels, test.images, test.labels)


def _office_layouts(directory: Path, name: str) -> list[_Layout]:
    folders = (name, "caltech10") if name == "caltech" else (name,)
    layouts = []
    for base in ("Office_Caltech_10", "office_caltech_10", "."):
        for folder in folders:
            sub = _relative(base, folder)
            needs = ((directory / sub,),)
            layouts.append(_Layout(f"{sub}/<class>/*.jpg", needs, _read_office_folder))
    return layouts


def _read_office_folder(paths: list[Path]) -> Splits:
    folder = _read_ten_class_folder(paths[0])
    return split_office(folder.images, folder.labels)


def _read_ten_class_folder(root: Path) -> FolderImages:
    folder = read_image_folder(root, FOLDER_IMAGE_SIZE)
    if len(folder.classes) != NUM_CLASSES:
        raise DataError(
            f"{root}: expected {NUM_CLASSES} class folders; got {len(folder.classes)}: "
            f"{list(folder.classes)}. Fix: keep exactly one folder per class."
        )
    return folder


def _check_name(name: str, known: tuple[str, ...], benchmark: str) -> None:
    if name in known:
        return
    close = difflib.get_close_matches(str(name).lower(), known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"unknown {benchmark} domain {name!r}; expected one of {list(known)}.{hint}")


def _not_found_message(
    name: str,
    directory: Path | None,
    data_dir: str | os.PathLike[str] | None,
    download: bool,
) -> str:
    explicit = data_dir is not None and os.fspath(data_dir) != ""
    origin = "the data_dir argument" if explicit else f"${DATA_DIR_ENV}"
    if directory is None:
        problem = (
            f"No data directory for domain {name!r}: no data_dir given and ${DATA_DIR_ENV} unset."
        )
    elif not directory.is_dir():
        what = "is not a directory" if directory.exists() else "does not exist"
        problem = f"Data directory {directory} (from {origin}) {what}."
    else:
        looked = "\n".join(
            f"  - {layout.description}" for layout in domain_layouts(name, directory)
        )
        problem = (
            f"No data for domain {name!r} in {directory} (from {origin}). Looked for:\n{looked}"
        )
    lines = [problem, _how_to_get(name, download)]
    if name == "syn" and directory is not None and (directory / SYN_SAMPLE_NPZ).is_file():
        lines.append(
            f"Note: {directory / SYN_SAMPLE_NPZ} is a 60-image sample, not a benchmark split, "
            "so it is not used. To smoke-test with it anyway, copy it to syn.npz."
        )
    return "\n".join(lines)


def _how_to_get(name: str, download: bool) -> str:
    where = (
        f"Fix: pass --data-dir DIR (data_dir=DIR) or set ${DATA_DIR_ENV} to the folder that "
        "holds the files"
    )
    if name in RESOURCES and download:
        return f"{where}; the download into the cache found no usable files."
    if name in RESOURCES:
        return (
            f"{where}, or pass --download (download=True) to fetch {name} into the cache "
            f"({default_cache_dir()})."
        )
    return f"{where}. {_SYN_SOURCE if name == 'syn' else _OFFICE_SOURCE}"
