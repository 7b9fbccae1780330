"""Image preprocessing done once per dataset, and augmentation done on whole batches.

Images are stored as uint8 [N, 3, 32, 32] tensors; each batch is converted to float,
augmented (random crop with zero padding 4, horizontal flip, as the FPL reference does with
torchvision) and normalised with the ImageNet mean and std, all as tensor ops on the batch.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_model_images(images: np.ndarray, size: int = 32) -> torch.Tensor:
    """uint8 [N, H, W, C] (C = 1 or 3) -> uint8 [N, 3, size, size], gray repeated to RGB."""
    batch = torch.from_numpy(np.array(images, dtype=np.uint8)).permute(0, 3, 1, 2)
    if batch.shape[-2:] != (size, size):
        resized = []
        for chunk in batch.split(4096):  # bounded memory for 60k-image domains
            scaled = F.interpolate(
                chunk.float(), size=(size, size), mode="bilinear", antialias=True
            )
            resized.append(scaled.round_().clamp_(0, 255).to(torch.uint8))
        batch = torch.cat(resized)
    if batch.shape[1] == 1:
        batch = batch.expand(-1, 3, -1, -1)
    return batch.contiguous()


def random_crop(batch: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Crop every image of [B, C, H, W] at its own random offset after zero padding."""
    size_b, _, height, width = batch.shape
    padded = F.pad(batch, (padding, padding, padding, padding))
    top = torch.randint(0, 2 * padding + 1, (size_b,), generator=generator, device=batch.device)
    left = torch.randint(0, 2 * padding + 1, (size_b,), generator=generator, device=batch.device)
    rows = top[:, None] + torch.arange(height, device=batch.device)  # [B, H]
    cols = left[:, None] + torch.arange(width, device=batch.device)  # [B, W]
    index_b = torch.arange(size_b, device=batch.device)[:, None, None]
    cropped = padded.permute(0, 2, 3, 1)[index_b, rows[:, :, None], cols[:, None, :]]
    return cropped.permute(0, 3, 1, 2)  # [B, C, H, W]


def random_flip(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image of [B, C, H, W] left-right with probability 1/2."""
    flip = torch.rand(batch.shape[0], generator=generator, device=batch.device) < 0.5
    return torch.where(flip[:, None, None, None], batch.flip(-1), batch)


@dataclass(frozen=True)
class ImagePipeline:
    """uint8 image batches -> normalised float batches, with optional train augmentation."""

    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    crop_padding: int = 4
    flip: bool = True
    augment: bool = True

    def train(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        images = batch.float().div_(255)
        if self.augment and self.crop_padding:
            images = random_crop(images, self.crop_padding, generator)
        if self.augment and self.flip:
            images = random_flip(images, generator)
        return self._normalise(images)

    def eval(self, batch: torch.Tensor) -> torch.Tensor:
        return self._normalise(batch.float().div_(255))

    def _normalise(self, images: torch.Tensor) -> torch.Tensor:
        mean = channel_constants(self.mean, images.device)
        std = channel_constants(self.std, images.device)
        return (images - mean) / std


@functools.lru_cache(maxsize=64)
def channel_constants(values: tuple[float, ...], device: torch.device) -> torch.Tensor:
    """[1, C, 1, 1] float32 on ``device``, made once: building it per batch would copy from
    the host every step, and each such copy to a GPU waits for all queued work."""
    return torch.tensor(values, dtype=torch.float32, device=device).view(1, -1, 1, 1)


class PassThrough:
    """For user data that is already model input: cast to float32, nothing else."""

    def train(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return batch.float()

    def eval(self, batch: torch.Tensor) -> torch.Tensor:
        return batch.float()
