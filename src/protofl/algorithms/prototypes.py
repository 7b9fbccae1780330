"""Class prototypes: per-class feature means, FINCH clustering, cluster and unbiased means.

FPL's server step (Huang et al., CVPR 2023, Sec. 3.2): for every class, cluster the clients'
local prototypes with FINCH (Sarfraz et al., CVPR 2019) under cosine distance, average each
cluster's members into a *cluster prototype*, and average a class's cluster prototypes into
its *unbiased prototype*. All functions here are pure and work on the ragged per-class
structure through a flat ``[P, D]`` tensor plus its ``[P]`` class labels (no object arrays).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from protofl.core.payloads import Prototypes


class PrototypeAccumulator:
    """Running per-class sums and counts of features; its means are local prototypes."""

    def __init__(
        self,
        num_classes: int,
        dim: int,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,  # float64 under the fp64 precision
    ) -> None:
        self.sums = torch.zeros(num_classes, dim, dtype=dtype, device=device)
        self.counts = torch.zeros(num_classes, dtype=torch.int64, device=device)

    def add(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Add a batch: features [B, D] (detached here), labels [B] int64."""
        self.sums.index_add_(0, labels, features.detach().to(self.sums.dtype))
        self.counts.index_add_(0, labels, torch.ones_like(labels))

    def prototypes(self) -> Prototypes:
        """Mean feature of every class seen at least once, with its sample count as support."""
        present = torch.nonzero(self.counts > 0).flatten()
        counts = self.counts[present]
        means = self.sums[present] / counts[:, None].to(self.sums.dtype)
        return Prototypes(means.cpu(), present.cpu(), counts.cpu())


def finch_partition(vectors: np.ndarray) -> np.ndarray:
    """Cluster labels of the coarsest FINCH partition that has at least two clusters.

    This is what the reference does (``c[:, -1]`` with cosine distance and no early exit):
    FINCH itself drops any level that collapses to one cluster. With one or two vectors,
    or when the first partition is already a single cluster, everything is one cluster.
    """
    count = vectors.shape[0]
    if count <= 2:
        return np.zeros(count, dtype=np.int64)
    partitions, _, _ = _finch()(
        vectors.astype(np.float32), distance="cosine", ensure_early_exit=False, verbose=False
    )
    return np.asarray(partitions[:, -1], dtype=np.int64)


def _finch() -> Any:
    # Imported on first use: finch pulls in scikit-learn and SciPy (about 2.5 s), which a
    # config error or a FedAvg run should not wait for. It warns at import when the
    # optional pynndescent is missing; FPL clusters at most a few hundred vectors, far
    # below the size where FINCH would use it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from finch.finch import FINCH
    return FINCH


def cluster_prototypes(local: Prototypes) -> Prototypes:
    """Per class, FINCH-cluster the local prototypes and return each cluster's plain mean.

    ``support`` of a cluster prototype is the number of local prototypes in it. FINCH runs
    on the CPU, so the result lies there whatever device ``local`` came from.
    """
    local = local.to("cpu")
    vectors, labels, supports = [], [], []
    for cls in torch.unique(local.labels).tolist():
        members = local.vectors[local.labels == cls]  # [n, D]
        assignment = torch.from_numpy(finch_partition(members.double().numpy()))
        for cluster in torch.unique(assignment).tolist():
            in_cluster = assignment == cluster
            vectors.append(members[in_cluster].mean(dim=0))
            labels.append(cls)
            supports.append(int(in_cluster.sum()))
    if not vectors:
        return Prototypes.empty(local.dim)
    return Prototypes(
        torch.stack(vectors),
        torch.tensor(labels, dtype=torch.int64),
        torch.tensor(supports, dtype=torch.int64),
    )


def class_means(
    prototypes: Prototypes, num_classes: int, weighted: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class mean of ``prototypes``: ([C, D] means, [C] bool has-prototype).

    Unweighted (every prototype counts once) gives FPL's unbiased prototype from cluster
    prototypes; ``weighted=True`` weights by ``support``, as FedProto's global prototype
    weights clients by their sample counts. Classes without prototypes get zero rows.
    """
    dim, device = prototypes.dim, prototypes.vectors.device  # computed where they lie
    dtype = prototypes.vectors.dtype  # float32, or float64 under the fp64 precision
    ones = torch.ones(len(prototypes), device=device, dtype=dtype)
    weights = prototypes.support.to(dtype) if weighted else ones
    sums = torch.zeros(num_classes, dim, device=device, dtype=dtype).index_add_(
        0, prototypes.labels, prototypes.vectors * weights[:, None]
    )
    totals = torch.zeros(num_classes, device=device, dtype=dtype).index_add_(
        0, prototypes.labels, weights
    )
    has = totals > 0
    means = torch.where(has[:, None], sums / totals.clamp(min=1e-12)[:, None], 0.0)
    return means, has


def global_prototypes(local: Prototypes, num_classes: int, weighted: bool) -> Prototypes:
    """One prototype per class present: the mean of its local prototypes, weighted by their
    sample counts (FedProto) or not (the FPL paper's Eq. 3). ``support`` is the number of
    samples behind each."""
    means, has = class_means(local, num_classes, weighted=weighted)
    samples = torch.zeros(num_classes, dtype=torch.int64, device=local.labels.device)
    samples = samples.index_add_(0, local.labels, local.support)
    classes = torch.nonzero(has).flatten()
    return Prototypes(means[classes], classes, samples[classes])
