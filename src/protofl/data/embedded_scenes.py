"""Renderers of the three procedural embedded domains: synthetic, strokes and segments.

Each takes a generator and the labels to draw and returns uint8 images [N, 32, 32, 3].
The ranges below were tuned by looking at sample grids (benchmarks/show_embedded.py) and
at how well a small classifier learns each domain; see the tests for the measured numbers.
"""

from __future__ import annotations

import numpy as np

from protofl.data import embedded_render as draw
from protofl.data.embedded_shapes import (
    GLYPH_CANVAS,
    GLYPH_STYLES,
    PEN_FORM_COUNTS,
    SEGMENT_ENDS,
    digit_skeleton,
    glyph_masks,
    seven_segment_table,
)

_CENTRE = (draw.SIZE - 1) / 2.0
_INK = np.array(  # pen colours: black, blue ballpoint, navy, pencil grey
    [(0.08, 0.08, 0.1), (0.1, 0.16, 0.5), (0.12, 0.12, 0.28), (0.35, 0.35, 0.37)],
    dtype=np.float32,
)
_LED = np.array(  # red, green, amber, blue, cyan, white
    [(1, 0.15, 0.1), (0.25, 1, 0.3), (1, 0.6, 0.1), (0.3, 0.5, 1), (0.2, 0.9, 1), (0.9, 0.95, 1)],
    dtype=np.float32,
)


def _uniform(rng: np.random.Generator, low: float, high: float, count: int) -> np.ndarray:
    return rng.uniform(low, high, count).astype(np.float32)


def random_linear(
    rng: np.random.Generator,
    scale_x: np.ndarray,
    scale_y: np.ndarray,
    max_rotation: float,
    slant: tuple[float, float],
) -> np.ndarray:
    """Return [N, 2, 2] maps: scale per axis, then slant (shear), then rotate (degrees)."""
    count = scale_x.shape[0]
    angle = np.radians(_uniform(rng, -max_rotation, max_rotation, count))
    shear = _uniform(rng, slant[0], slant[1], count)
    cos, sin, zero, one = np.cos(angle), np.sin(angle), np.zeros(count), np.ones(count)
    rotation = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], 1)
    # y grows downwards, so x -= shear * y leans the top of the digit to the right.
    shearing = np.stack([np.stack([one, -shear], -1), np.stack([zero, one], -1)], 1)
    scaling = np.stack([np.stack([scale_x, zero], -1), np.stack([zero, scale_y], -1)], 1)
    return np.asarray(rotation @ shearing @ scaling, dtype=np.float32)


def _inverse_affine(linear: np.ndarray, centre_out: np.ndarray, centre_in: float) -> np.ndarray:
    """Invert p_out = centre_out + linear @ (p_in - centre_in) into [N, 2, 3] (out -> in)."""
    back = np.linalg.inv(linear)
    offset = centre_in - np.einsum("nij,nj->ni", back, centre_out)
    return np.concatenate([back, offset[:, :, None]], axis=2).astype(np.float32)


def _textured_backgrounds(rng: np.random.Generator, count: int) -> np.ndarray:
    """Colour gradients with blotches and, on a third of them, stripes: [N, 32, 32, 3]."""
    first = rng.uniform(0.0, 1.0, (count, 3)).astype(np.float32)
    second = np.clip(first + rng.normal(0.0, 0.25, (count, 3)), 0.0, 1.0).astype(np.float32)
    ramp = draw.linear_ramps(rng, count)[..., None]
    canvas = first[:, None, None, :] + (second - first)[:, None, None, :] * ramp
    blotches = draw.smooth_noise(rng, count, 5) * _uniform(rng, 0.0, 0.12, count)[:, None, None]
    striped = (rng.random(count) < 0.35) * _uniform(rng, 0.04, 0.15, count)
    grating = draw.stripes(rng, count) * striped[:, None, None]
    return np.asarray(np.clip(canvas + (blotches + grating)[..., None], 0.0, 1.0))


def _finish(
    rng: np.random.Generator, images: np.ndarray, max_blur: float, max_noise: float
) -> np.ndarray:
    """Camera-like degradation: a random blur, then per-pixel Gaussian noise; to uint8."""
    count = len(images)
    blurred = draw.blur(images, _uniform(rng, 0.0, max_blur, count))
    sigma = _uniform(rng, 0.0, max_noise, count)[:, None, None, None]
    return draw.to_uint8(blurred + rng.standard_normal(images.shape, dtype=np.float32) * sigma)


def render_synthetic(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """Font digits (Aileron, five weights/outline) on textured colour, with partial neighbours."""
    count = len(labels)
    masks, glyph_height = glyph_masks()
    style = rng.integers(0, len(GLYPH_STYLES), count)
    scale = _uniform(rng, 15.0, 27.0, count) / glyph_height
    linear = random_linear(rng, scale * _uniform(rng, 0.8, 1.25, count), scale, 12.0, (-0.1, 0.3))
    centre = _CENTRE + rng.uniform(-2.5, 2.5, (count, 2))
    inverse = _inverse_affine(linear, centre, (GLYPH_CANVAS - 1) / 2.0)
    ink = draw.warp_masks(masks, style * 10 + labels, inverse)
    # House-number crops (SVHN) show parts of the neighbouring digits of the same sign.
    for side in (-1.0, 1.0):
        shifted = inverse.copy()
        shifted[:, 0, 2] -= side * _uniform(rng, 0.7, 0.9, count) * glyph_height
        neighbour = style * 10 + rng.integers(0, 10, count)
        present = (rng.random(count) < 0.5)[:, None, None]
        ink = np.maximum(ink, present * draw.warp_masks(masks, neighbour, shifted))
    canvas = _textured_backgrounds(rng, count)
    colour = draw.contrasting_colours(rng, canvas.mean(axis=(1, 2)), (0.25, 0.6))
    shadow = np.zeros_like(ink)
    shadow[:, 1:, 1:] = ink[:, :-1, :-1] * (rng.random(count) < 0.3)[:, None, None]
    canvas = draw.paint(canvas, shadow * 0.7, np.zeros((count, 3), dtype=np.float32))
    canvas = draw.paint(canvas, ink, colour)
    return _finish(rng, canvas, 1.0, 0.06)


def _pen_points(rng: np.random.Generator, digit: int, form: int, count: int) -> np.ndarray:
    """Jitter and place ``count`` copies of one pen skeleton: [count, P, 2] pixels."""
    points, stroke_of, _ = digit_skeleton(digit, form)
    local = np.broadcast_to(points - 0.5, (count, *points.shape)).copy()
    # Each stroke shifts a little on its own (pen lifts), the whole shape bends smoothly
    # (slow sines across the other axis), and every point trembles slightly.
    local += rng.normal(0.0, 0.04, (count, int(stroke_of.max()) + 1, 2))[:, stroke_of]
    frequency = rng.uniform(0.5, 1.5, (count, 1, 2))
    phase = rng.uniform(0.0, 2.0 * np.pi, (count, 1, 2))
    amplitude = rng.uniform(0.0, 0.07, (count, 1, 2))
    across = (points - 0.5)[None, :, ::-1]
    local += amplitude * np.sin(2.0 * np.pi * frequency * across + phase)
    local += rng.normal(0.0, 0.012, local.shape)
    height = _uniform(rng, 17.0, 26.0, count)
    linear = random_linear(rng, height * _uniform(rng, 0.5, 0.8, count), height, 10.0, (-0.1, 0.45))
    centre = _CENTRE + rng.uniform(-2.0, 2.0, (count, 1, 2))
    return np.asarray(np.einsum("nij,npj->npi", linear, local) + centre, dtype=np.float32)


def _paper(rng: np.random.Generator, count: int) -> np.ndarray:
    """Light, slightly tinted, blotchy paper; a third of the sheets ruled: [N, 32, 32, 3]."""
    white = _uniform(rng, 0.82, 1.0, count)[:, None] - rng.uniform(0.0, 0.08, (count, 3))
    blotches = draw.smooth_noise(rng, count, 6) * _uniform(rng, 0.01, 0.04, count)[:, None, None]
    canvas = white[:, None, None, :].astype(np.float32) + blotches[..., None]
    row = _uniform(rng, 1.0, 30.0, count)[:, None, None]
    ruled = np.clip(1.0 - np.abs(np.arange(draw.SIZE, dtype=np.float32)[:, None] - row), 0, 1)
    ruled *= (rng.random(count) < 0.3)[:, None, None] * 0.5
    line = np.tile(np.array([0.55, 0.7, 0.95], dtype=np.float32), (count, 1))
    return draw.paint(canvas, np.broadcast_to(ruled, (count, draw.SIZE, draw.SIZE)), line)


def render_strokes(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """Pen-stroke digits from jittered skeletons, dark ink on light paper."""
    count = len(labels)
    form = (rng.random(count) * np.take(PEN_FORM_COUNTS, labels)).astype(np.intp)
    half_width = _uniform(rng, 0.45, 1.3, count)
    ink = np.zeros((count, draw.SIZE, draw.SIZE), dtype=np.float32)
    # One skeleton at a time: they differ in segment count, and padding them all to the
    # longest would double the cost of the rasteriser.
    for digit, forms in enumerate(PEN_FORM_COUNTS):
        for which in range(forms):
            rows = np.flatnonzero((labels == digit) & (form == which))
            pairs = digit_skeleton(digit, which)[2]
            placed = _pen_points(rng, digit, which, rows.size)
            every_segment = np.ones((1, rows.size, len(pairs)), dtype=bool)
            starts, ends = placed[:, pairs[:, 0]], placed[:, pairs[:, 1]]
            ink[rows] = draw.render_capsules(starts, ends, half_width[rows], every_segment)[0]
    pressure = np.clip(0.8 + 0.25 * draw.smooth_noise(rng, count, 3), 0.45, 1.0)
    colour = _INK[rng.integers(0, len(_INK), count)] + rng.normal(0.0, 0.03, (count, 3))
    canvas = draw.paint(_paper(rng, count), ink * pressure, colour.astype(np.float32))
    return _finish(rng, canvas, 0.8, 0.04)


def _segment_layout(
    rng: np.random.Generator, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Place a display's digit and its possible neighbours: starts, ends [N, 21, 2], lit, shown."""
    count = len(labels)
    gap = _uniform(rng, 0.1, 0.18, count)[:, None, None]
    direction = SEGMENT_ENDS[:, 2:] - SEGMENT_ENDS[:, :2]
    starts = SEGMENT_ENDS[:, :2] + gap * direction - (0.5, 1.0)  # [N, 7, 2], box centred
    ends = SEGMENT_ENDS[:, 2:] - gap * direction - (0.5, 1.0)
    pitch = _uniform(rng, 1.35, 1.7, count)[:, None]
    table, form = seven_segment_table(), rng.integers(0, 2, count)
    slots_start, slots_end, lit, shown = [], [], [], []
    for slot in (-1, 0, 1):
        digit = labels if slot == 0 else rng.integers(0, 10, count)
        present = np.ones(count, bool) if slot == 0 else rng.random(count) < 0.5
        offset = np.stack([slot * pitch[:, 0], np.zeros(count)], axis=1)[:, None, :]
        slots_start.append(starts + offset)
        slots_end.append(ends + offset)
        lit.append(table[digit, form] & present[:, None])
        shown.append(np.repeat(present[:, None], 7, axis=1))
    return (
        np.concatenate(slots_start, 1),
        np.concatenate(slots_end, 1),
        np.concatenate(lit, 1),
        np.concatenate(shown, 1),
    )


def render_segments(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """Seven-segment LED digits glowing on dark panels, unlit segments faintly visible."""
    count = len(labels)
    starts, ends, lit, shown = _segment_layout(rng, labels)
    height = _uniform(rng, 15.0, 25.0, count) / 2.0  # the layout box is two units tall
    width = 2.0 * height * _uniform(rng, 0.4, 0.6, count)
    linear = random_linear(rng, width, height, 4.0, (0.0, 0.25))
    centre = _CENTRE + rng.uniform(-2.0, 2.0, (count, 1, 2)).astype(np.float32)
    starts = np.einsum("nij,npj->npi", linear, starts) + centre
    ends = np.einsum("nij,npj->npi", linear, ends) + centre
    half_width = height * _uniform(rng, 0.08, 0.14, count)
    glowing, unlit = draw.render_capsules(starts, ends, half_width, np.stack([lit, shown]))
    return _finish(rng, _light_panels(rng, glowing, unlit), 0.7, 0.05)


def _light_panels(rng: np.random.Generator, glowing: np.ndarray, unlit: np.ndarray) -> np.ndarray:
    """Colour lit segments [N, H, W], their halo and faint unlit ones onto dark panels."""
    count = len(glowing)
    ghost = _uniform(rng, 0.0, 0.3, count) * (rng.random(count) < 0.6)
    glow = _uniform(rng, 0.2, 0.8, count)[:, None, None]
    halo = draw.blur(glowing, _uniform(rng, 0.8, 1.6, count)) * glow
    light = np.maximum(glowing, ghost[:, None, None] * unlit) + halo
    jitter = rng.normal(0.0, 0.08, (count, 3))
    colour = np.clip(_LED[rng.integers(0, len(_LED), count)] + jitter, 0.0, 1.0)
    panel = _uniform(rng, 0.0, 0.1, 3 * count).reshape(count, 1, 1, 3)
    panel = panel + 0.03 * draw.smooth_noise(rng, count, 4)[..., None]
    return np.asarray(panel + light[..., None] * colour.astype(np.float32)[:, None, None, :])
