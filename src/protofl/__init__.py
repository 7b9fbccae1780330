"""protofl: federated prototype learning (FPL, CVPR 2023) across data domains."""

from protofl.api import RunResult, run, train_federated
from protofl.config import RunConfig
from protofl.data import ClientArrays, as_class_indices

__version__ = "0.1.0"

__all__ = [
    "ClientArrays",
    "RunConfig",
    "RunResult",
    "__version__",
    "as_class_indices",
    "run",
    "train_federated",
]
