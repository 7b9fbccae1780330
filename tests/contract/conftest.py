"""Contract tests train tiny models, where one intra-op thread is fastest."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _tiny_models_one_thread(one_thread: None) -> None:
    """Every contract test runs under the shared ``one_thread`` fixture."""
