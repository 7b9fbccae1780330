"""PACS, Office-Home and DomainNet in their official layouts, listed into a
:class:`~protofl.data.folder_scan.FolderListing` (read by :mod:`protofl.data.folders`).

* PACS (Li et al., ICCV 2017): ``kfold/<domain>/<class>/<image>`` with the official split
  files ``<domain>_{train,crossval,test}_kfold.txt``, lines ``art_painting/dog/pic_001.jpg 1``
  (labels 1..7). The ``_test`` file lists the whole domain (it is the target set of domain
  generalisation), so a client trains on ``_train`` and is tested on what of
  ``_crossval`` and ``_test`` is not in ``_train`` (the 10 % cross-validation part). Without
  split files, the seeded 80/20 split of :mod:`protofl.data.folders`.
* Office-Home (Venkateswara et al., CVPR 2017): ``OfficeHomeDataset_10072016/<Domain>/
  <class>/<image>``; no official split, so the seeded 80/20 split.
* DomainNet (Peng et al., ICCV 2019): ``<domain>/<class>/<image>`` with the official
  ``<domain>_train.txt`` / ``<domain>_test.txt`` (lines ``clipart/bird/x.jpg 27``, labels
  0..344), required.

Class ids follow sorted class names, which is the official label order of all three.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

from protofl.data.folder_scan import (
    DomainFiles,
    FolderListing,
    class_images,
    select_classes,
    visible_dirs,
)
from protofl.errors import DataError, DataNotFoundError

logger = logging.getLogger(__name__)

PACS_DOMAINS = ("photo", "art_painting", "cartoon", "sketch")
OFFICE_HOME_FOLDERS = {  # protofl's domain name -> the folder names it may have on disk
    "art": ("Art",),
    "clipart": ("Clipart",),
    "product": ("Product",),
    "real_world": ("Real World", "Real_World", "RealWorld"),
}
DOMAINNET_DOMAINS = ("clipart", "infograph", "painting", "quickdraw", "real", "sketch")
PACS_SPLIT_DIRS = (".", "splits", "image_list", "Train val splits and h5py files pre-read")


class SplitEntry(NamedTuple):
    """One line of an official split file."""

    path: str  # relative to the image root, with forward slashes
    label: int
    line: int


def parse_split_file(path: Path) -> list[SplitEntry]:
    """``<relative path> <integer label>`` per line (the path may hold spaces); blank
    lines skipped; anything else is an error naming the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read the split file ({err}).") from err
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        relative, _, label = line.strip().rpartition(" ")
        try:
            value = int(label)
        except ValueError:
            value = -1
        if not relative or value < 0:
            raise DataError(
                f"{path}, line {number}: expected '<relative/path.jpg> <label>'; got "
                f"{line[:80]!r}. Fix: use the official split file unchanged."
            )
        entries.append(SplitEntry(relative.replace("\\", "/"), value, number))
    if not entries:
        raise DataError(f"{path}: the split file lists no images.")
    return entries


def class_of(entry: SplitEntry) -> str:
    """The class folder of an entry (``<domain>/<class>/<file>``)."""
    parts = entry.path.split("/")
    return parts[-2] if len(parts) >= 2 else ""


def check_labels(entries: Sequence[SplitEntry], source: Path) -> None:
    """Each class folder must carry one label, and each label one class folder: a file
    whose numbers disagree with its paths is not the official one."""
    label_of: dict[str, int] = {}
    class_with: dict[int, str] = {}
    for entry in entries:
        name = class_of(entry)
        known_label = label_of.setdefault(name, entry.label)
        known_class = class_with.setdefault(entry.label, name)
        if known_label != entry.label or known_class != name:
            raise DataError(
                f"{source}, line {entry.line}: class folder {name!r} with label {entry.label}, "
                f"but earlier lines pair {name!r} with label {known_label} and label "
                f"{entry.label} with {known_class!r}. Fix: use the official split file unchanged."
            )


def _domain_from_splits(
    name: str, base: Path, train: list[SplitEntry], held: list[SplitEntry]
) -> DomainFiles:
    trained = {e.path for e in train}
    tested = list({e.path: e for e in held if e.path not in trained}.values())
    entries = [(e, "train") for e in train] + [(e, "test") for e in tested]
    return DomainFiles(
        name,
        tuple(base / e.path for e, _ in entries),
        tuple(class_of(e) for e, _ in entries),
        tuple(split for _, split in entries),
    )


def _scanned_domain(name: str, folder: Path) -> DomainFiles:
    files: list[Path] = []
    names: list[str] = []
    for class_name in visible_dirs(folder):
        images = class_images(folder / class_name)
        files += images
        names += [class_name] * len(images)
    if not files:
        raise DataError(f"{folder}: no images under <class>/ folders.")
    return DomainFiles(name, tuple(files), tuple(names))


def _split_file(folders: Sequence[Path], name: str) -> Path | None:
    return next((f / name for f in folders if (f / name).is_file()), None)


def _first_dir(candidates: Sequence[Path], what: str, layout: str) -> Path:
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    looked = "\n  ".join(str(c) for c in candidates)
    raise DataNotFoundError(f"{what} not found; looked for:\n  {looked}\nExpected {layout}.")


OneDomain = Callable[[Path, str], tuple[DomainFiles, str | None]]


def list_named(
    root: Path,
    every: Sequence[str],
    required: Sequence[str],
    classes: Sequence[str],
    one_domain: OneDomain,
) -> FolderListing:
    """The ``required`` domains (an error when absent) and the benchmark's other domains
    found on disk: the classes are their union, so a run on a subset of domains (a Flower
    node with one domain) numbers the classes as a run on all of them does."""
    listed, notes = [], {}
    for name in every:
        try:
            domain, note = one_domain(root, name)
        except DataNotFoundError:
            if name in required:
                raise
            logger.info("domain %r not found under %s; not used", name, root)
            continue
        listed.append(domain)
        if note:
            notes[name] = note
    return _listing(root, listed, classes, notes)


def pacs_domain(root: Path, name: str) -> tuple[DomainFiles, str | None]:
    """One PACS domain, with the official split files where present."""
    layout = "DIR/kfold/<domain>/<class>/<image> (or DIR/<domain>/...)"
    bases = [root / "kfold", root / "pacs_data", root / "PACS" / "kfold", root / "PACS", root]
    folder = _first_dir([b / name for b in bases], f"PACS domain {name!r}", layout)
    split_dirs = [base / d for base in (folder.parent, root) for d in PACS_SPLIT_DIRS]
    train_file = _split_file(split_dirs, f"{name}_train_kfold.txt")
    if train_file is None:
        return _scanned_domain(name, folder), None
    held_files = [train_file.with_name(f"{name}_{p}_kfold.txt") for p in ("crossval", "test")]
    held_files = [f for f in held_files if f.is_file()]
    if not held_files:
        raise DataError(
            f"{train_file} found but neither {name}_crossval_kfold.txt nor "
            f"{name}_test_kfold.txt next to it. Fix: keep the official split files together."
        )
    train = parse_split_file(train_file)
    check_labels(train, train_file)
    held = []
    for path in held_files:
        entries = parse_split_file(path)
        check_labels(entries, path)
        held += entries
    note = f"official split files in {train_file.parent} (test: crossval/test not in train)"
    return _domain_from_splits(name, folder.parent, train, held), note


def office_home_domain(root: Path, name: str) -> tuple[DomainFiles, str | None]:
    """One Office-Home domain from ``root`` (or ``root/OfficeHomeDataset_10072016``)."""
    layout = "DIR/OfficeHomeDataset_10072016/{Art,Clipart,Product,Real World}/<class>/<image>"
    bases = [root / "OfficeHomeDataset_10072016", root / "OfficeHome", root / "office_home", root]
    candidates = [b / spelling for b in bases for spelling in OFFICE_HOME_FOLDERS[name]]
    return _scanned_domain(
        name, _first_dir(candidates, f"Office-Home domain {name!r}", layout)
    ), None


def domainnet_domain(root: Path, name: str) -> tuple[DomainFiles, str | None]:
    """One DomainNet domain with its official split files (required)."""
    dirs = [root, root / "txt", root / "splits"]
    train_file, test_file = (_split_file(dirs, f"{name}_{part}.txt") for part in ("train", "test"))
    if train_file is None or test_file is None:
        raise DataNotFoundError(
            f"DomainNet split files {name}_train.txt and {name}_test.txt are not both in "
            f"{root} (or its txt/, splits/). Fix: pass --download to fetch them "
            "(checksummed), or get them from http://ai.bu.edu/M3SDA/ and put them next to "
            "the <domain>/ folders."
        )
    train, test = parse_split_file(train_file), parse_split_file(test_file)
    check_labels(train, train_file)
    check_labels(test, test_file)
    note = f"official {train_file.name} / {test_file.name}"
    return _domain_from_splits(name, root, train, test), note


def _listing(
    root: Path, domains: list[DomainFiles], classes: Sequence[str], notes: dict[str, str]
) -> FolderListing:
    union = tuple(sorted({c for d in domains for c in d.class_names}))
    return select_classes(FolderListing(root, tuple(domains), union, notes), classes)
