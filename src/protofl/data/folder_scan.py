"""Listing a folder of domains: ``DIR/<domain>/<class>/<image>`` or, with the split given,
``DIR/<domain>/{train,test}/<class>/<image>``.

Only names are read here (no image is opened), so listing is cheap and the benchmark's
domains and classes are known before anything decodes. Classes are the sorted union of the
class folders over all domains; a class a domain lacks is allowed and reported.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from protofl.core.registry import unknown_name_message
from protofl.errors import ConfigError, DataError, DataNotFoundError

logger = logging.getLogger(__name__)

# Compared in lower case, so IMG.JPG and photo.Png count too.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")
SPLITS = ("train", "test")


@dataclass(frozen=True)
class DomainFiles:
    """One domain's image files, each with its class name and, where given, its split."""

    name: str
    files: tuple[Path, ...]
    class_names: tuple[str, ...]  # one per file
    splits: tuple[str, ...] | None = None  # one per file ("train"/"test"), or None: not given


@dataclass(frozen=True)
class FolderListing:
    """Every domain's files and the classes over all domains (sorted; ids follow this order)."""

    root: Path
    domains: tuple[DomainFiles, ...]
    classes: tuple[str, ...]
    notes: dict[str, str] = field(default_factory=dict)  # per domain: where its files came from

    def domain(self, name: str) -> DomainFiles:
        for domain in self.domains:
            if domain.name == name:
                return domain
        names = [d.name for d in self.domains]
        raise ConfigError(unknown_name_message(f"domain under {self.root}", name, names))

    def missing_classes(self) -> dict[str, list[str]]:
        """Per domain, the classes it has no image of (only domains that lack some)."""
        missing = {}
        for domain in self.domains:
            absent = sorted(set(self.classes) - set(domain.class_names))
            if absent:
                missing[domain.name] = absent
        return missing


def is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith(".")


def visible_dirs(folder: Path) -> list[str]:
    """Sub-folder names, sorted, without hidden ones (.ipynb_checkpoints is not a class)."""
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))


def scan_folders(root: Path, classes: Sequence[str] = ()) -> FolderListing:
    """List ``root/<domain>/...``; ``classes`` (names) keeps only those classes."""
    if not root.is_dir():
        raise DataNotFoundError(
            f"{root}: not a directory. Fix: pass --data-dir DIR where DIR/<domain>/<class>/"
            "<image> (or DIR/<domain>/{train,test}/<class>/<image>)."
        )
    names = visible_dirs(root)
    if not names:
        raise DataError(
            f"{root}: no domain folders; expected DIR/<domain>/<class>/<image>. Fix: point "
            "--data-dir at the folder that holds one folder per domain."
        )
    domains = tuple(_scan_domain(root / name) for name in names)
    return select_classes(FolderListing(root, domains, _union(domains)), classes)


def _scan_domain(folder: Path) -> DomainFiles:
    subfolders = visible_dirs(folder)
    lowered = {name.lower(): name for name in subfolders}
    if set(SPLITS) <= set(lowered):
        others = sorted(set(lowered) - set(SPLITS))
        if others:
            raise DataError(
                f"{folder}: has train/ and test/ next to other folders {others}; expected "
                "either class folders or exactly train/ and test/. Fix: move the others."
            )
        parts = [_scan_classes(folder / lowered[split], split) for split in SPLITS]
        files = parts[0][0] + parts[1][0]
        return DomainFiles(folder.name, files, parts[0][1] + parts[1][1], parts[0][2] + parts[1][2])
    files, class_names, _ = _scan_classes(folder, None)
    return DomainFiles(folder.name, files, class_names)


def _scan_classes(
    folder: Path, split: str | None
) -> tuple[tuple[Path, ...], tuple[str, ...], tuple[str, ...]]:
    files: list[Path] = []
    class_names: list[str] = []
    for name in visible_dirs(folder):
        images = class_images(folder / name)
        files += images
        class_names += [name] * len(images)
    if not files:
        raise DataError(
            f"{folder}: no images; expected <class>/<image> with names ending in "
            f"{', '.join(IMAGE_SUFFIXES)} (any case). Fix: point at the right folder."
        )
    return tuple(files), tuple(class_names), tuple([split or ""] * len(files))


def class_images(class_dir: Path) -> list[Path]:
    """The image files under ``class_dir`` (nested folders too), in sorted order: top-down,
    hidden files and folders skipped. Office-Caltech's reader keeps torchvision's rules
    instead (``image_folders._class_images``; why there)."""
    found: list[Path] = []
    ignored = 0
    for folder, dirs, names in os.walk(class_dir, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if is_image(name):
                found.append(Path(folder) / name)
            else:
                ignored += 1
    if ignored:
        logger.info("%s: ignored %d file(s) that are not images by name", class_dir, ignored)
    if not found:
        logger.warning("%s: class folder without images; the class counts as absent", class_dir)
    return found


def _union(domains: Sequence[DomainFiles]) -> tuple[str, ...]:
    return tuple(sorted({name for domain in domains for name in domain.class_names}))


def select_classes(listing: FolderListing, classes: Sequence[str]) -> FolderListing:
    """Only the named classes (ids follow their sorted order); unknown names are errors."""
    if not classes:
        return listing
    for name in classes:
        if name not in listing.classes:
            raise ConfigError(
                unknown_name_message(f"class in {listing.root}", name, list(listing.classes))
            )
    keep = set(classes)
    domains = []
    for domain in listing.domains:
        chosen = [i for i, c in enumerate(domain.class_names) if c in keep]
        splits = None if domain.splits is None else tuple(domain.splits[i] for i in chosen)
        domains.append(
            DomainFiles(
                domain.name,
                tuple(domain.files[i] for i in chosen),
                tuple(domain.class_names[i] for i in chosen),
                splits,
            )
        )
    return FolderListing(listing.root, tuple(domains), tuple(sorted(keep)), listing.notes)
