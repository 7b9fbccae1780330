"""Shared fixtures. The tests are layered: ``unit/`` (maths, config, payloads against hand
values or plain loops), ``contract/`` (every registered algorithm, model and benchmark;
golden runs), ``integration/`` (loops, resume, CLI, reports, Flower, real data). Slow tests
are marked ``slow``: ``pytest -m "not slow"`` is the quick local loop; CI runs everything."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import torch

# The suite means the same on a GPU machine: every run in it (device="auto" included) and
# every process it starts runs on the CPU, where the golden files were recorded. CUDA starts
# lazily, so hiding the GPUs here, before any test touches CUDA, is enough.
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Tiny models: a second intra-op thread only adds synchronisation (10x slower on a busy
    2-core machine). Restored afterwards, so other modules run as before."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
