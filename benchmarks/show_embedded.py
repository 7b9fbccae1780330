"""Write a PNG grid of embedded-benchmark samples: one block per domain, one column per class.

Usage: python benchmarks/show_embedded.py [--out runs/embedded.png] [--rows 4] [--scale 3]
       [--seed 0]

Each domain gets ``rows`` rows of training images, column c showing class c, so a reader can
check at a glance that the digits are legible and that the domains look different.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from protofl.data.domain import Domain
from protofl.data.embedded import EMBEDDED_DOMAINS, build_embedded_domains

_GAP = 4  # pixels between tiles
_LABEL_WIDTH = 90  # room on the left for the domain name


def class_tiles(domain: Domain, rows: int) -> np.ndarray:
    """Return [rows, 10, H, W, 3] training images: the first ``rows`` of each class."""
    labels = domain.y_train.numpy()
    picks = [np.flatnonzero(labels == c)[:rows] for c in range(10)]
    tiles = np.stack([domain.x_train[p] for p in picks], axis=1)
    return np.repeat(tiles, 3, axis=-1) if tiles.shape[-1] == 1 else tiles


def domain_block(domain: Domain, rows: int, scale: int) -> Image.Image:
    """Lay one domain's tiles out on a white block with its name on the left."""
    tiles = class_tiles(domain, rows)
    side = tiles.shape[2] * scale
    width = _LABEL_WIDTH + 10 * (side + _GAP)
    block = Image.new("RGB", (width, rows * (side + _GAP) + _GAP), "white")
    for r in range(rows):
        for c in range(10):
            tile = Image.fromarray(tiles[r, c]).resize((side, side), Image.Resampling.NEAREST)
            block.paste(tile, (_LABEL_WIDTH + c * (side + _GAP), _GAP + r * (side + _GAP)))
    ImageDraw.Draw(block).text((4, block.height // 2), domain.name, fill="black", anchor="lm")
    return block


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/embedded.png"))  # git-ignored
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--scale", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()
    domains = build_embedded_domains(EMBEDDED_DOMAINS, seed=args.seed)
    print(f"built {len(domains)} domains in {time.perf_counter() - start:.2f} s")
    blocks = [domain_block(d, args.rows, args.scale) for d in domains]
    grid = Image.new("RGB", (blocks[0].width, sum(b.height for b in blocks)), "white")
    for i, block in enumerate(blocks):
        grid.paste(block, (0, sum(b.height for b in blocks[:i])))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(args.out)
    print(f"wrote {args.out} ({grid.width} x {grid.height})")


if __name__ == "__main__":
    main()
