"""Domains from listed image files: decoding (cached), the train/test split, and the facts
``config.json`` records (classes a domain lacks, how it was split, files skipped).

Without a given split each domain is split 80/20 per class, by a permutation seeded from
``dataset_seed`` and the domain's name: the same files give the same test set in every run
and for every algorithm and seed, as a fixed benchmark split should.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from protofl.core.seeding import derive_seed, numpy_generator
from protofl.data.domain import Domain
from protofl.data.folder_scan import DomainFiles, FolderListing
from protofl.data.image_cache import decode_files
from protofl.data.sources import default_cache_dir

logger = logging.getLogger(__name__)

TEST_SHARE = 0.2


def stratified_test_mask(labels: np.ndarray, seed: int, domain: str) -> np.ndarray:
    """True for the test samples: round(20%) of each class (half up), chosen at random."""
    rng = numpy_generator(derive_seed(seed, "folder-split", domain))
    test = np.zeros(labels.shape[0], dtype=bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = math.floor(TEST_SHARE * members.size + 0.5)
        test[rng.permutation(members)[:count]] = True
    return test


def load_listed_domain(
    listing: FolderListing,
    name: str,
    image_size: int,
    cache_dir: str | None,
    skip_unreadable: bool,
    split_seed: int,
) -> Domain:
    """Decode one listed domain and split it (given split, else seeded 80/20 per class)."""
    files = listing.domain(name)
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    decoded = decode_files(files.files, image_size, cache, skip_unreadable)
    ids = {class_name: index for index, class_name in enumerate(listing.classes)}
    labels = np.array([ids[c] for c in files.class_names], dtype=np.int64)[decoded.kept]
    if files.splits is not None:
        test = np.array([s == "test" for s in files.splits], dtype=bool)[decoded.kept]
        how = listing.notes.get(name, "given by the folders (train/, test/)")
    else:
        test = stratified_test_mask(labels, split_seed, name)
        how = f"seeded class-stratified 80/20 (dataset_seed={split_seed})"
    images = decoded.images
    domain = Domain.from_arrays(
        name,
        images[~test],
        labels[~test],
        images[test],
        labels[test],
        num_classes=len(listing.classes),
    )
    return Domain(
        domain.name,
        domain.x_train,
        domain.y_train,
        domain.x_test,
        domain.y_test,
        facts=_facts(listing, files, how, decoded.unreadable, int((~test).sum()), int(test.sum())),
    )


def _facts(
    listing: FolderListing,
    files: DomainFiles,
    split: str,
    unreadable: tuple[str, ...],
    train: int,
    test: int,
) -> dict[str, Any]:
    facts: dict[str, Any] = {"split": split, "train": train, "test": test}
    missing = listing.missing_classes().get(files.name)
    if missing:  # allowed (a hospital without one condition), but never silent
        logger.warning("domain %r has no images of class(es) %s", files.name, ", ".join(missing))
        facts["missing_classes"] = missing
    if unreadable:
        facts["skipped_unreadable"] = {"count": len(unreadable), "files": list(unreadable)}
    return facts
