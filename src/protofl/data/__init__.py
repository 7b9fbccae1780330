"""Data: the label gate, domains, benchmarks, client partitions and user arrays."""

from protofl.data.domain import Domain
from protofl.data.labels import as_class_indices
from protofl.data.user import ClientArrays

__all__ = ["ClientArrays", "Domain", "as_class_indices"]
