"""Shared fixtures."""

from __future__ import annotations

import pytest
import torch

from tiny_data import TinyNet


@pytest.fixture
def tiny_net() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet()
