"""Robust prototype aggregation: a defence against poisoned prototypes (our design), applied
to the clients' uploaded prototypes before any algorithm's server step sees them.

A client of a prototype method can upload, as its prototype of class c, a vector that drags
the class's server prototypes (FPL's FINCH clusters and unbiased prototype, FedProto's and
FedProc's global means, FedPLVM's clusters, FedDAP's merged ones): another class's
prototype, or a crafted direction. Two rules (``RunConfig.prototype_aggregation``):

``median``
    Per class (per class and domain for domain-tagged prototypes, FedDAP), the clients'
    prototypes are replaced by their coordinate-wise median, one prototype whose support is
    the group's total. Robust while the honest prototypes of a class are a majority; the
    server step then sees one prototype per class (FPL's FINCH has nothing to cluster).
``centre-filter``
    Each class's robust centre is the coordinate-wise median of its prototypes; a prototype
    is kept only when its own class's centre is the nearest class centre by cosine and their
    cosine is at least ``prototype_min_cosine``. Survivors reach the server step unchanged,
    so FINCH still sees the domains' clusters; a prototype of another class, labelled c, lies
    nearer that class's centre and is dropped.

Both ignore the support a client claims (a liar could claim many samples). ``all`` (the
default) hands every prototype on, as the papers do.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from protofl.core.payloads import Prototypes
from protofl.federation.aggregation import coordinate_median

# protofl.config.robustness.PROTOTYPE_RULES lists the same names (a test holds them equal)
PROTOTYPE_RULES = ("all", "median", "centre-filter")


def class_centres(prototypes: Prototypes, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per class, the coordinate-wise median of its prototypes: ([C, D] centres, [C] bool
    has-prototype); classes without prototypes get zero rows."""
    vectors = prototypes.vectors
    centres = vectors.new_zeros(num_classes, prototypes.dim)
    has = torch.zeros(num_classes, dtype=torch.bool, device=vectors.device)
    for cls in torch.unique(prototypes.labels).tolist():
        centres[cls] = coordinate_median(vectors[prototypes.labels == cls])
        has[cls] = True
    return centres, has


def median_prototypes(prototypes: Prototypes) -> Prototypes:
    """One prototype per class (per class and domain when tagged): the coordinate-wise
    median of the group, with the group's summed support. Groups come out sorted."""
    tags = prototypes.domains
    keys = prototypes.labels[:, None] if tags is None else torch.stack([prototypes.labels, tags], 1)
    unique, group = torch.unique(keys, dim=0, return_inverse=True)  # [G, 1 or 2], [P]
    vectors = torch.stack(
        [coordinate_median(prototypes.vectors[group == g]) for g in range(unique.shape[0])]
    )
    support = torch.zeros(unique.shape[0], dtype=torch.int64, device=group.device)
    support.index_add_(0, group, prototypes.support)
    domains = None if tags is None else unique[:, 1].contiguous()
    return Prototypes(vectors, unique[:, 0].contiguous(), support, domains)


def centre_filter_mask(prototypes: Prototypes, num_classes: int, min_cosine: float) -> torch.Tensor:
    """[P] bool: whether each prototype's nearest class centre (cosine) is its own class's,
    with a cosine of at least ``min_cosine``."""
    centres, has = class_centres(prototypes, num_classes)
    present = torch.nonzero(has).flatten()  # [C']
    cosine = F.normalize(prototypes.vectors, dim=1) @ F.normalize(centres[present], dim=1).T
    nearest = present[cosine.argmax(dim=1)]  # [P]
    own = cosine[torch.arange(len(prototypes)), torch.searchsorted(present, prototypes.labels)]
    return (nearest == prototypes.labels) & (own >= min_cosine)


def defend_prototypes(
    prototypes: Prototypes, rule: str, num_classes: int, min_cosine: float = 0.0
) -> Prototypes:
    """The clients' prototypes after the rule (``all``: unchanged)."""
    if rule == "all" or not len(prototypes):
        return prototypes
    if rule == "median":
        return median_prototypes(prototypes)
    keep = centre_filter_mask(prototypes, num_classes, min_cosine)
    domains = None if prototypes.domains is None else prototypes.domains[keep]
    return Prototypes(
        prototypes.vectors[keep], prototypes.labels[keep], prototypes.support[keep], domains
    )
