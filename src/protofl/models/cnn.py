"""A small, fast CNN for the embedded benchmark and tests (about 0.1 M parameters)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _conv_bn(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    """Conv-BN-ReLU stages of 32/64/128 channels (max-pooled after the first two) and
    512-d features: the last 8x8 map average-pooled into 2x2 quadrants, then a linear head.

    Why quadrants: a digit's identity is where its strokes are; pooling the whole map
    globally (as ResNet-10 can afford with its larger receptive field) made this small
    network learn several times more slowly. Why no projection layer: like ResNet's, the
    features are pooled post-ReLU BatchNorm activations, so their norms (about 10 here) keep
    FPL's cosine-based contrastive gradients (scaled by 1 / (temperature * norm)) in range;
    a ReLU projection with norms near 2 diverged at the paper's temperature 0.02.
    """

    feature_dim = 512

    def __init__(self, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.stage1 = _conv_bn(in_channels, 32)
        self.stage2 = _conv_bn(32, 64)
        self.stage3 = _conv_bn(64, 128)
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out = F.max_pool2d(self.stage1(x), 2)  # 16x16 for 32x32 input
        out = F.max_pool2d(self.stage2(out), 2)  # 8x8
        out = self.stage3(out)
        height, width = out.shape[-2:]
        if height % 2 == 0 and width % 2 == 0:  # the same values, and a deterministic
            # backward on CUDA (adaptive pooling's has none)
            out = F.avg_pool2d(out, (height // 2, width // 2))
        else:
            out = F.adaptive_avg_pool2d(out, 2)
        return torch.flatten(out, 1)  # [B, 128 * 2 * 2]

    def head(self, z: torch.Tensor) -> torch.Tensor:
        return self.classifier(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
