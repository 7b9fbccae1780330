"""The folder benchmarks made concrete when a run starts: ``folders`` lists ``--data-dir``;
``pacs``, ``office-home`` and ``domainnet`` download what ``--download`` may fetch, then list
their official layout (:mod:`protofl.data.named_folders`). The result is an ordinary
:class:`~protofl.data.benchmarks.BenchmarkSpec` whose loader decodes the listed files."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from protofl.data import named_folders
from protofl.data.archives import WHERE_TO_GET, download_benchmark
from protofl.data.benchmarks import BENCHMARKS, BenchmarkSpec, LoadOptions
from protofl.data.domain import Domain
from protofl.data.folder_scan import FolderListing, scan_folders
from protofl.data.folders import load_listed_domain
from protofl.data.sources import default_cache_dir, resolve_data_dir
from protofl.errors import ConfigError, DataNotFoundError

logger = logging.getLogger(__name__)


def folders_spec(options: LoadOptions) -> BenchmarkSpec:
    """``folders`` made concrete: its domains and classes listed from the data folder."""
    root = resolve_data_dir(options.data_dir)
    if root is None:
        raise ConfigError(
            "benchmark 'folders' needs --data-dir DIR (or $PROTOFL_DATA_DIR), where "
            "DIR/<domain>/<class>/<image> or DIR/<domain>/{train,test}/<class>/<image>."
        )
    return listed_spec(BENCHMARKS.get("folders"), scan_folders(root, options.classes))


def listed_spec(template: BenchmarkSpec, listing: FolderListing) -> BenchmarkSpec:
    """``template`` with the listed domains and classes, loading from the listing."""

    def loader(name: str, options: LoadOptions) -> Domain:
        return load_listed_domain(
            listing,
            name,
            options.image_size,
            options.cache_dir,
            options.skip_unreadable,
            options.dataset_seed,
        )

    domains = template.domains or tuple(d.name for d in listing.domains)
    allocation = {d: template.clients_per_domain.get(d, 1) for d in domains}
    return dataclasses.replace(
        template,
        domains=domains,
        clients_per_domain=allocation,
        loader=loader,
        num_classes=len(listing.classes),
        class_names=listing.classes,
        resolve=None,
    )


OFFICIAL_CLASS_COUNTS = {"pacs": 7, "office-home": 65, "domainnet": 345}


def named_spec(name: str, options: LoadOptions) -> BenchmarkSpec:
    """An official-layout benchmark made concrete: downloaded if asked, then listed."""
    template = BENCHMARKS.get(name)
    domains = options.domains or template.domains
    root = resolve_data_dir(options.data_dir)
    cache = Path(options.cache_dir).expanduser() if options.cache_dir else default_cache_dir()
    if options.download:
        root = root or cache / name
        download_benchmark(name, domains, root, cache / "downloads" / name)
    where = WHERE_TO_GET.get(name, "Or pass --download to fetch it (checksummed).")
    if root is None:
        raise ConfigError(f"benchmark {name!r} needs --data-dir DIR. {where}")
    readers: dict[str, named_folders.OneDomain] = {
        "pacs": named_folders.pacs_domain,
        "office-home": named_folders.office_home_domain,
        "domainnet": named_folders.domainnet_domain,
    }
    try:
        listing = named_folders.list_named(
            root, template.domains, domains, options.classes, readers[name]
        )
    except DataNotFoundError as err:
        raise DataNotFoundError(f"{err}\n{where}") from err
    expected = OFFICIAL_CLASS_COUNTS[name]
    if not options.classes and len(listing.classes) != expected:
        # allowed (a trimmed copy), but a wrong folder often shows here first
        logger.warning(
            "%s under %s has %d classes; the official release has %d",
            name,
            root,
            len(listing.classes),
            expected,
        )
    return listed_spec(template, listing)
