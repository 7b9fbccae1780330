"""What travels between server and clients, and the state each side keeps.

Server and clients talk only through these dataclasses: named tensors, class prototypes and
scalars, which is all a real network (or Flower's ``ArrayRecord``/``MetricRecord``) carries.
Nothing holds a reference to the other side's objects.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import torch

from protofl.errors import PayloadError

StateDict = dict[str, torch.Tensor]
"""Named tensors: model weights (parameters and buffers), or an algorithm's own state."""


def domain_id(name: str) -> int:
    """A domain's integer tag: the same on every client and the server with no shared list
    (CRC-32 of the name, 31 bits)."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


@dataclass(frozen=True, eq=False)
class Prototypes:
    """A ragged set of class prototypes: any number of vectors per class.

    ``vectors[i]`` belongs to class ``labels[i]``; ``support[i]`` says how much evidence it
    summarises (samples for a local prototype, member prototypes for a cluster prototype).
    ``domains[i]``, when set, is the data domain it comes from (:func:`domain_id` of the
    domain's name), for methods that keep prototypes per class and domain (FedDAP).
    """

    vectors: torch.Tensor  # [P, D] float32
    labels: torch.Tensor  # [P] int64
    support: torch.Tensor  # [P] int64
    domains: torch.Tensor | None = None  # [P] int64, or None: untagged

    @staticmethod
    def empty(dim: int) -> Prototypes:
        return Prototypes(
            torch.zeros(0, dim),
            torch.zeros(0, dtype=torch.int64),
            torch.zeros(0, dtype=torch.int64),
        )

    @staticmethod
    def concat(parts: list[Prototypes]) -> Prototypes:
        if not parts:
            raise PayloadError("cannot concatenate an empty list of prototype sets.")
        tagged = [p.domains is not None for p in parts]
        if any(tagged) and not all(tagged):
            raise PayloadError("cannot mix prototype sets with and without domain tags.")
        domains = [p.domains for p in parts if p.domains is not None]
        return Prototypes(
            torch.cat([p.vectors for p in parts]),
            torch.cat([p.labels for p in parts]),
            torch.cat([p.support for p in parts]),
            torch.cat(domains) if all(tagged) else None,
        )

    def with_vectors(self, vectors: torch.Tensor) -> Prototypes:
        """The same prototypes (classes, support, domains) with other vectors."""
        return Prototypes(vectors, self.labels, self.support, self.domains)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    def to(self, device: torch.device | str) -> Prototypes:
        domains = None if self.domains is None else self.domains.to(device)
        return Prototypes(
            self.vectors.to(device), self.labels.to(device), self.support.to(device), domains
        )

    def validate(self, num_classes: int, dim: int, name: str = "prototypes") -> Prototypes:
        """Check shapes, dtypes, finiteness and class range; return self or raise PayloadError."""
        v, lab, sup = self.vectors, self.labels, self.support
        if v.ndim != 2 or v.shape[1] != dim or not v.is_floating_point():
            raise PayloadError(
                f"{name}: expected float vectors of shape [P, {dim}]; got {v.dtype} "
                f"{tuple(v.shape)}."
            )
        tags = () if self.domains is None else ((self.domains, "domains"),)
        for tensor, what in ((lab, "labels"), (sup, "support"), *tags):
            if tensor.dtype != torch.int64 or tuple(tensor.shape) != (v.shape[0],):
                raise PayloadError(
                    f"{name}: expected int64 {what} of shape [{v.shape[0]}]; got "
                    f"{tensor.dtype} {tuple(tensor.shape)}."
                )
        if len(self) and not torch.isfinite(v).all():
            bad = torch.nonzero(~torch.isfinite(v).all(dim=1)).flatten()[:5].tolist()
            raise PayloadError(f"{name}: vectors at rows {bad} contain NaN or inf.")
        if len(self) and (lab.min() < 0 or lab.max() >= num_classes):
            raise PayloadError(
                f"{name}: class labels must lie in [0, {num_classes}); got "
                f"{lab.min().item()}..{lab.max().item()}."
            )
        return self


@dataclass(frozen=True, eq=False)
class ServerMessage:
    """Server -> client at the start of a round."""

    round: int  # 1-based index of the round about to run
    weights: StateDict
    prototypes: Prototypes | None = None  # e.g. FPL's cluster prototypes


@dataclass(frozen=True, eq=False)
class ClientUpdate:
    """Client -> server at the end of a round."""

    client_id: str
    num_samples: int
    weights: StateDict
    prototypes: Prototypes | None = None  # e.g. local class means
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class GlobalState:
    """Everything the server keeps between rounds.

    ``prototypes`` are broadcast with the weights; ``tensors`` are server-only algorithm state
    (e.g. FedDyn's h, an adaptive optimiser's moments) and never leave the server.
    """

    round: int  # rounds completed so far
    weights: StateDict
    prototypes: Prototypes | None = None
    tensors: StateDict = field(default_factory=dict)
