"""Batch preprocessing and augmentation against per-image loops."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from protofl.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImagePipeline,
    random_crop,
    random_flip,
    to_model_images,
)


def test_gray_images_are_resized_and_repeated_to_rgb() -> None:
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28, 1), dtype=np.uint8)
    result = to_model_images(images)
    assert result.shape == (5, 3, 32, 32) and result.dtype == torch.uint8
    assert torch.equal(result[:, 0], result[:, 2])
    constant = np.full((1, 16, 16, 1), 200, dtype=np.uint8)
    assert to_model_images(constant).unique().tolist() == [200]


def test_images_at_target_size_pass_unchanged() -> None:
    images = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    assert torch.equal(to_model_images(images), torch.from_numpy(images).permute(0, 3, 1, 2))


def test_random_crop_matches_per_image_loop() -> None:
    batch = torch.rand(6, 3, 8, 8)
    generator = torch.Generator().manual_seed(3)
    result = random_crop(batch, 2, generator)
    replay = torch.Generator().manual_seed(3)
    top = torch.randint(0, 5, (6,), generator=replay)
    left = torch.randint(0, 5, (6,), generator=replay)
    padded = F.pad(batch, (2, 2, 2, 2))
    for i in range(6):
        t, lft = int(top[i]), int(left[i])
        torch.testing.assert_close(result[i], padded[i, :, t : t + 8, lft : lft + 8])


def test_random_flip_matches_per_image_loop() -> None:
    batch = torch.rand(8, 3, 4, 4)
    result = random_flip(batch, torch.Generator().manual_seed(5))
    flips = torch.rand(8, generator=torch.Generator().manual_seed(5)) < 0.5
    for i in range(8):
        expected = batch[i].flip(-1) if flips[i] else batch[i]
        torch.testing.assert_close(result[i], expected)
    assert 0 < int(flips.sum()) < 8


def test_pipeline_normalises_with_imagenet_statistics() -> None:
    batch = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    result = ImagePipeline().eval(batch)
    expected = (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(result[0, :, 0, 0], expected)


def test_pipeline_without_augmentation_equals_eval() -> None:
    batch = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    pipeline = ImagePipeline(augment=False)
    generator = torch.Generator().manual_seed(0)
    torch.testing.assert_close(pipeline.train(batch, generator), pipeline.eval(batch))
