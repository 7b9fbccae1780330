"""Digit shapes for the embedded benchmark: pen skeletons, seven-segment layouts, font glyphs.

Shapes are fixed data; all per-sample randomness is applied later by the domain renderers.
Unit conventions: x to the right, y downwards, angles in degrees with -90 pointing up.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from protofl.errors import DataError

GLYPH_CANVAS = 64  # side of the square canvas each font glyph is rendered on
GLYPH_FONT_SIZE = 44  # digits 30 px tall, leaving room for the bold strokes
# Pillow's stroke widths for the font glyph variants; a negative value means an outline
# of that width with the letter's inside left empty (hollow signage digits).
GLYPH_STYLES: tuple[int, ...] = (0, 1, 2, 3, -2)

# Seven-segment layout: (x0, y0, x1, y1) per segment in a box 1 wide and 2 tall.
SEGMENT_ENDS = np.array(
    [
        (0, 0, 1, 0),  # a: top
        (1, 0, 1, 1),  # b: upper right
        (1, 1, 1, 2),  # c: lower right
        (0, 2, 1, 2),  # d: bottom
        (0, 1, 0, 2),  # e: lower left
        (0, 0, 0, 1),  # f: upper left
        (0, 1, 1, 1),  # g: middle
    ],
    dtype=np.float32,
)
SEGMENT_ENDS.flags.writeable = False
# Lit segments per digit; digits with two entries have a second form that real displays use
# (6 without its top bar, 7 with a hook, 9 without its bottom bar).
_LIT: tuple[tuple[str, ...], ...] = (
    ("abcdef",),
    ("bc",),
    ("abdeg",),
    ("abcdg",),
    ("bcfg",),
    ("acdfg",),
    ("acdefg", "cdefg"),
    ("abc", "abcf"),
    ("abcdefg",),
    ("abcdfg", "abcfg"),
)


def seven_segment_table() -> np.ndarray:
    """Return a [10, 2, 7] bool table: digit, display form, which segments a..g are lit."""
    table = np.zeros((10, 2, 7), dtype=bool)
    for digit, forms in enumerate(_LIT):
        for form in range(2):
            letters = forms[min(form, len(forms) - 1)]
            table[digit, form, ["abcdefg".index(c) for c in letters]] = True
    return table


def _arc(
    cx: float, cy: float, rx: float, ry: float, start: float, end: float, count: int = 12
) -> np.ndarray:
    angles = np.radians(np.linspace(start, end, count))
    return np.stack([cx + rx * np.cos(angles), cy + ry * np.sin(angles)], axis=1)


def _line(*points: tuple[float, float]) -> np.ndarray:
    return np.array(points, dtype=np.float64)


def _path(*parts: np.ndarray) -> np.ndarray:
    """Join polylines into one pen path (the pen does not lift between the parts)."""
    return np.concatenate(parts)


# Pen paths per digit in a unit box, each form a list of strokes (ordered polylines); arcs
# approximate the round parts. Second and third forms are common handwritten variants.
_TOP_ARC_OF_3 = _arc(0.48, 0.26, 0.34, 0.26, -155, 90, 10)
_LOOP_OF_9 = _arc(0.48, 0.3, 0.36, 0.3, 0, 360, 16)
_FLAGGED_STEM = _line((0.25, 0.22), (0.58, 0.0), (0.58, 1.0))
_PEN_FORMS: tuple[tuple[list[np.ndarray], ...], ...] = (
    ([_arc(0.5, 0.5, 0.36, 0.49, -90, 275, 18)],),
    (
        [_FLAGGED_STEM],
        [_line((0.55, 0.0), (0.5, 1.0))],
        [_FLAGGED_STEM, _line((0.3, 1), (0.85, 1))],
    ),
    ([_path(_arc(0.5, 0.3, 0.36, 0.3, -165, 25, 10), _line((0.12, 1.0), (0.92, 1.0)))],),
    (
        [_TOP_ARC_OF_3, _arc(0.48, 0.74, 0.38, 0.26, -90, 155)],
        [_path(_line((0.15, 0.0), (0.85, 0.0), (0.45, 0.42)), _arc(0.48, 0.7, 0.4, 0.3, -95, 155))],
    ),
    (
        [_line((0.68, 0.0), (0.06, 0.68), (0.96, 0.68)), _line((0.68, 0.0), (0.68, 1.0))],
        [_line((0.15, 0.0), (0.1, 0.6), (0.95, 0.6)), _line((0.7, 0.15), (0.7, 1.0))],
    ),
    (
        [
            _path(
                _line((0.86, 0.0), (0.22, 0.0), (0.16, 0.46)), _arc(0.46, 0.7, 0.38, 0.3, -140, 150)
            )
        ],
    ),
    (
        [
            _path(
                _arc(0.62, 0.66, 0.5, 0.66, -100, -180, 8),
                _arc(0.5, 0.72, 0.38, 0.28, 180, 540, 16),
            )
        ],
    ),
    (
        [_line((0.08, 0.0), (0.92, 0.0), (0.38, 1.0))],
        [_line((0.08, 0.0), (0.92, 0.0), (0.38, 1.0)), _line((0.3, 0.5), (0.82, 0.5))],
    ),
    ([_arc(0.5, 0.25, 0.3, 0.25, 90, 450, 14), _arc(0.5, 0.74, 0.38, 0.26, -90, 270, 16)],),
    (
        [_path(_LOOP_OF_9, _line((0.84, 0.3), (0.78, 1.0)))],
        [_path(_LOOP_OF_9, _arc(0.45, 0.3, 0.39, 0.7, 0, 115, 8))],
    ),
)
PEN_FORM_COUNTS: tuple[int, ...] = tuple(len(forms) for forms in _PEN_FORMS)


@lru_cache(maxsize=32)
def digit_skeleton(digit: int, form: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return pen skeleton ``form`` (< PEN_FORM_COUNTS[digit]) of ``digit`` in the unit box.

    points: [P, 2] float32 control points; stroke_of: [P] which stroke each point belongs to;
    pairs: [K, 2] indices of the points each straight segment joins. Read-only arrays.
    """
    strokes = _PEN_FORMS[digit][form]
    points = np.concatenate(strokes).astype(np.float32)
    stroke_of = np.concatenate([np.full(len(s), i) for i, s in enumerate(strokes)])
    starts = np.flatnonzero(stroke_of[:-1] == stroke_of[1:])
    pairs = np.stack([starts, starts + 1], axis=1)
    for array in (points, stroke_of, pairs):
        array.flags.writeable = False
    return points, stroke_of, pairs


def _glyph(digit: int, style: int, font: ImageFont.FreeTypeFont) -> np.ndarray:
    """Render one digit, centred on its ink bounding box, as a float mask in [0, 1]."""
    text, width = str(digit), abs(style)
    image = Image.new("L", (GLYPH_CANVAS, GLYPH_CANVAS), 0)
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font, stroke_width=width)
    origin = (round((GLYPH_CANVAS - left - right) / 2), round((GLYPH_CANVAS - top - bottom) / 2))
    draw.text(origin, text, fill=255, font=font, stroke_width=width, stroke_fill=255)
    mask = np.asarray(image, dtype=np.float32) / 255.0
    if style < 0:
        inside = Image.new("L", image.size, 0)
        ImageDraw.Draw(inside).text(origin, text, fill=255, font=font)
        mask = np.clip(mask - np.asarray(inside, dtype=np.float32) / 255.0, 0.0, 1.0)
    return mask


@lru_cache(maxsize=1)
def glyph_masks() -> tuple[np.ndarray, float]:
    """Return font glyph masks and the digits' ink height on their canvas.

    masks: [len(GLYPH_STYLES) * 10, GLYPH_CANVAS, GLYPH_CANVAS], index ``style * 10 + digit``,
    drawn with the FreeType font Pillow ships (Aileron). Read-only.
    """
    font = ImageFont.load_default(size=GLYPH_FONT_SIZE)
    if not isinstance(font, ImageFont.FreeTypeFont):  # Pillow built without FreeType
        raise DataError(
            "The embedded benchmark renders digits with FreeType, but this Pillow was built "
            "without it. Fix: install the Pillow wheel from PyPI (pip install -U pillow)."
        )
    masks = np.stack([_glyph(d, s, font) for s in GLYPH_STYLES for d in range(10)])
    rows = np.flatnonzero(masks[:10].max(axis=(0, 2)) > 0.5)
    masks.flags.writeable = False
    return masks, float(rows[-1] - rows[0] + 1)
