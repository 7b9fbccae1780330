"""Batched numpy drawing primitives for the embedded benchmark: warps, pen strokes, blur, noise.

Every function draws a whole batch at once, so building a domain costs a few dozen array
operations rather than one Python call per image. Images are float32 in [0, 1]: masks are
(N, H, W), colour images (N, H, W, 3). Pixel centres sit at integer coordinates, x to the
right and y downwards. Randomness comes only from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import numpy as np

SIZE = 32  # side of every embedded image, as in the Digits benchmark of the FPL paper
_CHUNK = 128  # images per rasteriser pass: small enough for the scratch arrays to stay in cache
_BLUR_RADIUS = 3  # taps each side; enough for sigma up to about 1.5 px
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601 weights


def pixel_grid(size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Return the x and y coordinates of every pixel centre, each flattened to (size * size,)."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    return xs.ravel(), ys.ravel()


def interpolation_matrix(size_out: int, size_in: int) -> np.ndarray:
    """Return the (size_out, size_in) matrix of linear-interpolation weights between grids.

    Both grids span the same extent (pixel-area alignment, like ``align_corners=False``), so
    ``M @ v`` resamples a 1-D signal and ``M @ image @ M.T`` a square image.
    """
    centres = (np.arange(size_out) + 0.5) * size_in / size_out - 0.5
    centres = np.clip(centres, 0.0, size_in - 1.0)
    low = np.minimum(np.floor(centres).astype(np.intp), size_in - 2)
    frac = centres - low
    matrix = np.zeros((size_out, size_in), dtype=np.float32)
    rows = np.arange(size_out)
    matrix[rows, low] = 1.0 - frac
    matrix[rows, low + 1] = frac
    return matrix


def resize(images: np.ndarray, size: int = SIZE) -> np.ndarray:
    """Resample square (N, h, h) images to (N, size, size) by separable linear interpolation."""
    matrix = interpolation_matrix(size, images.shape[1])
    return np.asarray(matrix @ images.astype(np.float32) @ matrix.T)


def smooth_noise(rng: np.random.Generator, count: int, cells: int, size: int = SIZE) -> np.ndarray:
    """Return (count, size, size) low-frequency noise: a cells x cells normal grid, upsampled."""
    coarse = rng.standard_normal((count, cells, cells), dtype=np.float32)
    return resize(coarse, size)


def warp_masks(masks: np.ndarray, which: np.ndarray, inverse: np.ndarray) -> np.ndarray:
    """Sample masks[which[n]] through the affine map inverse[n] (image -> mask coordinates).

    masks: [G, S, S] source masks; which: [N] indices into them; inverse: [N, 2, 3]. Returns
    [N, SIZE, SIZE] by bilinear interpolation, reading zero outside the source mask.
    """
    side = masks.shape[1]
    # A zero border plus clipping means every coordinate outside the source reads zero.
    flat = np.pad(masks, ((0, 0), (1, 1), (1, 1))).reshape(-1)
    xs, ys = pixel_grid()
    sx = inverse[:, 0, :1] * xs + inverse[:, 0, 1:2] * ys + inverse[:, 0, 2:] + 1.0
    sy = inverse[:, 1, :1] * xs + inverse[:, 1, 1:2] * ys + inverse[:, 1, 2:] + 1.0
    sx = np.clip(sx, 0.0, float(side))
    sy = np.clip(sy, 0.0, float(side))
    x0 = np.floor(sx).astype(np.intp)
    y0 = np.floor(sy).astype(np.intp)
    fx = (sx - x0).astype(np.float32)
    fy = (sy - y0).astype(np.float32)
    stride = side + 2
    base = which.astype(np.intp)[:, None] * stride * stride + y0 * stride + x0
    top = flat[base] * (1.0 - fx) + flat[base + 1] * fx
    bottom = flat[base + stride] * (1.0 - fx) + flat[base + stride + 1] * fx
    out = top * (1.0 - fy) + bottom * fy
    return np.asarray(out.reshape(-1, SIZE, SIZE), dtype=np.float32)


def render_capsules(
    starts: np.ndarray, ends: np.ndarray, half_width: np.ndarray, layers: np.ndarray
) -> np.ndarray:
    """Rasterise pen strokes: unions of thick straight segments, anti-aliased.

    starts, ends: [N, K, 2] segment end points in pixels; half_width: [N] pen radius in
    pixels; layers: [L, N, K] bool, which segments each of L output layers draws (layers
    share the distance computation, the expensive part). Returns [L, N, SIZE, SIZE]
    coverage in [0, 1].
    """
    # Layers skip a segment by adding an infinite distance to it.
    penalty = np.where(layers, np.float32(0.0), np.float32(np.inf))
    chunks = np.array_split(np.arange(len(starts)), max(1, -(-len(starts) // _CHUNK)))
    nearest = np.concatenate(
        [_nearest_squared(starts[rows], ends[rows], penalty[:, rows]) for rows in chunks], axis=1
    )
    # A one-pixel linear ramp at the edge is a cheap, good-enough anti-aliasing.
    coverage = np.clip(half_width[:, None] + 0.5 - np.sqrt(nearest), 0.0, 1.0)
    return np.asarray(coverage.reshape(len(layers), len(starts), SIZE, SIZE), dtype=np.float32)


def _nearest_squared(starts: np.ndarray, ends: np.ndarray, penalty: np.ndarray) -> np.ndarray:
    """Per layer, squared distance from each pixel to the nearest kept segment: [L, n, P]."""
    xs, ys = pixel_grid()
    count, segments = starts.shape[:2]
    nearest = np.full((penalty.shape[0], count, xs.size), np.inf, dtype=np.float32)
    scratch = np.empty((4, count, xs.size), dtype=np.float32)
    for k in range(segments):
        squared = _squared_distances(xs, ys, starts[:, k], ends[:, k], scratch)
        for layer in range(penalty.shape[0]):
            np.minimum(nearest[layer], squared + penalty[layer, :, k : k + 1], out=nearest[layer])
    return nearest


def _squared_distances(
    xs: np.ndarray, ys: np.ndarray, start: np.ndarray, end: np.ndarray, scratch: np.ndarray
) -> np.ndarray:
    """Squared distance from every pixel [P] to one segment per image [N, 2]: [N, P].

    Works in place in scratch [4, N, P]; this loop dominates the build time of two domains.
    """
    px, py, along, tmp = scratch
    ax, ay = start[:, :1], start[:, 1:]
    bx, by = end[:, :1] - ax, end[:, 1:] - ay
    np.subtract(xs, ax, out=px)
    np.subtract(ys, ay, out=py)
    np.multiply(px, bx, out=along)
    np.multiply(py, by, out=tmp)
    along += tmp
    along *= 1.0 / (bx * bx + by * by + 1e-6)
    np.clip(along, 0.0, 1.0, out=along)  # nearest point of the segment, not of its line
    np.multiply(along, bx, out=tmp)
    px -= tmp
    np.multiply(along, by, out=tmp)
    py -= tmp
    px *= px
    py *= py
    px += py
    squared: np.ndarray = px
    return squared


def blur(images: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Gaussian-blur each image with its own sigma (pixels; 0 leaves it unchanged).

    images: [N, H, W] or [N, H, W, C] with H == W; sigma: [N]. Edges are replicated.
    """
    side = images.shape[1]
    matrices = _blur_matrices(sigma, side)  # [N, side, side]
    channels = images.shape[3] if images.ndim == 4 else 1
    # Blurring is linear, so each axis is one batched matrix product: BLAS does the work.
    rows = matrices @ images.astype(np.float32).reshape(-1, side, side * channels)
    columns = rows.reshape(-1, side, side, channels).transpose(0, 2, 1, 3)
    both = matrices @ columns.reshape(-1, side, side * channels)
    out = both.reshape(-1, side, side, channels).transpose(0, 2, 1, 3)
    return np.ascontiguousarray(out.reshape(images.shape))


def _blur_matrices(sigma: np.ndarray, side: int) -> np.ndarray:
    """Return [N, side, side] matrices applying a 1-D Gaussian with replicated edges."""
    taps = np.arange(-_BLUR_RADIUS, _BLUR_RADIUS + 1)
    spread = np.maximum(sigma.astype(np.float32), 1e-3)[:, None]
    weights = np.exp(-0.5 * (taps / spread) ** 2)
    weights /= weights.sum(axis=1, keepdims=True)
    # Tap k of output i reads input clip(i + k): a 0/1 selection per tap, weighted and summed.
    sources = np.clip(np.arange(side)[None, :] + taps[:, None], 0, side - 1)  # [taps, side]
    select = (sources[:, :, None] == np.arange(side)).astype(np.float32)  # [taps, side, side]
    return np.asarray(np.einsum("nk,kij->nij", weights, select), dtype=np.float32)


def luminance(colours: np.ndarray) -> np.ndarray:
    """Return the BT.601 luma of RGB values in [0, 1]; the last axis holds the channels."""
    return np.asarray(colours @ _LUMA, dtype=np.float32)


def contrasting_colours(
    rng: np.random.Generator, background: np.ndarray, gap: tuple[float, float]
) -> np.ndarray:
    """Draw one random RGB colour per row of background [N, 3], its luma ``gap`` away.

    The luma difference is uniform in ``gap`` (less only where it would leave [0, 1]).

    Its sign goes whichever way leaves more room, so dark backgrounds get light ink and light
    ones dark ink, as on real signs; the hue stays random.
    """
    count = background.shape[0]
    colours = rng.uniform(0.0, 1.0, (count, 3)).astype(np.float32)
    base = luminance(background)
    step = np.asarray(rng.uniform(gap[0], gap[1], count), dtype=np.float32)
    target = np.clip(np.where(base > 0.5, base - step, base + step), 0.0, 1.0)[:, None]
    luma = luminance(colours)[:, None]
    # Scaling towards black or mixing towards white hits the target luma exactly and never
    # leaves [0, 1], unlike adding a constant (clipping would eat the contrast).
    darker = colours * (target / np.maximum(luma, 1e-6))
    lighter = 1.0 - (1.0 - colours) * ((1.0 - target) / np.maximum(1.0 - luma, 1e-6))
    return np.asarray(np.where(target < luma, darker, lighter), dtype=np.float32)


def linear_ramps(rng: np.random.Generator, count: int) -> np.ndarray:
    """Return [N, SIZE, SIZE] ramps from 0 to 1 along a random direction, for gradients."""
    angle = rng.uniform(0.0, 2.0 * np.pi, count).astype(np.float32)
    xs, ys = pixel_grid()
    centre = (SIZE - 1) / 2.0
    along = np.cos(angle)[:, None] * (xs - centre) + np.sin(angle)[:, None] * (ys - centre)
    return (0.5 + along / SIZE).reshape(-1, SIZE, SIZE).astype(np.float32)


def stripes(rng: np.random.Generator, count: int) -> np.ndarray:
    """Return [N, SIZE, SIZE] sine gratings in [-1, 1] with random period, angle and phase."""
    angle = rng.uniform(0.0, np.pi, count).astype(np.float32)[:, None]
    period = rng.uniform(3.0, 12.0, count).astype(np.float32)[:, None]
    phase = rng.uniform(0.0, 2.0 * np.pi, count).astype(np.float32)[:, None]
    xs, ys = pixel_grid()
    along = np.cos(angle) * xs + np.sin(angle) * ys
    return np.asarray(np.sin(2.0 * np.pi * along / period + phase).reshape(-1, SIZE, SIZE))


def paint(canvas: np.ndarray, mask: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """Alpha-blend one colour per image [N, 3] into canvas [N, H, W, 3] through mask [N, H, W]."""
    alpha = mask[..., None]
    return np.asarray(canvas * (1.0 - alpha) + colour[:, None, None, :] * alpha)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Quantise float images in [0, 1] to uint8, clipping what drifted outside."""
    return np.asarray(np.round(np.clip(images, 0.0, 1.0) * 255.0), dtype=np.uint8)
