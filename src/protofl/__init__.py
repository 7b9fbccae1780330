"""protofl: federated prototype learning (FPL, CVPR 2023) across data domains."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from protofl.config import RunConfig

if TYPE_CHECKING:
    from protofl.api import RunResult, run, train_federated
    from protofl.data import ClientArrays, as_class_indices

__version__ = "0.1.0"

# The rest of the public API loads on first use, so that ``import protofl`` (and the CLI's
# config checks) do not wait for torch, the data stack and the simulator.
_LAZY = {
    "RunResult": "protofl.api",
    "run": "protofl.api",
    "train_federated": "protofl.api",
    "ClientArrays": "protofl.data",
    "as_class_indices": "protofl.data",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'protofl' has no attribute {name!r}")


__all__ = [
    "ClientArrays",
    "RunConfig",
    "RunResult",
    "__version__",
    "as_class_indices",
    "run",
    "train_federated",
]
