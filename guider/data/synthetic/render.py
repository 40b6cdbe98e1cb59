"""Rendered product images of synthetic items (PIL).

The image of an item shows its attributes: the glyph is the category's shape, filled with
the item's colour in its pattern, outlined according to its style, on a textured
backdrop whose tint is the material, with the brand's logo badge in the top-left
corner. Drawn at twice the size and downsampled, so edges are smooth.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

from guider.data.synthetic.vocab import CATEGORIES, COLOURS, MATERIALS, PATTERNS

SUPERSAMPLE = 2
Box = tuple[float, float, float, float]


def render(attrs: dict[str, int], size: int, rng: np.random.Generator) -> Image.Image:
    """A size x size RGB image of an item with attribute value indices `attrs`."""
    big = size * SUPERSAMPLE
    colour = list(COLOURS.values())[attrs["colour"]]
    image = _backdrop(attrs["material"], big, rng)
    mask = Image.new("L", (big, big), 0)
    scale = 0.72 + 0.04 * (attrs["style"] % 3)
    margin = big * (1 - scale) / 2
    box = (margin, margin, big - margin, big - margin)
    SHAPES[CATEGORIES[attrs["category"]].shape](ImageDraw.Draw(mask), box)
    image.paste(_pattern_fill(PATTERNS[attrs["pattern"]], colour, big), (0, 0), mask)
    _outline(image, mask, width=attrs["style"] % 4)
    _badge(ImageDraw.Draw(image), attrs["brand"], big)
    return image.resize((size, size), Image.LANCZOS)


BADGE_COLOURS = ((230, 0, 120), (0, 170, 170), (255, 200, 0), (90, 0, 200), (0, 120, 0), (200, 60, 0))
BADGE_SHAPES = ("circle", "square", "triangle", "diamond")


def _badge(draw: ImageDraw.ImageDraw, brand: int, size: int) -> None:
    """The brand's logo: one of 4 shapes x 6 colours (24 brands), white-rimmed, top-left."""
    shape, colour = BADGE_SHAPES[brand % 4], BADGE_COLOURS[(brand // 4) % len(BADGE_COLOURS)]
    x0, y0, side = size * 0.04, size * 0.04, size * 0.22
    box = (x0, y0, x0 + side, y0 + side)
    style = {"fill": colour, "outline": (255, 255, 255), "width": max(1, size // 64)}
    if shape == "circle":
        draw.ellipse(box, **style)
    elif shape == "square":
        draw.rectangle(box, **style)
    elif shape == "triangle":
        draw.polygon([(x0 + side / 2, y0), (x0 + side, y0 + side), (x0, y0 + side)], **style)
    else:
        draw.polygon(
            [(x0 + side / 2, y0), (x0 + side, y0 + side / 2), (x0 + side / 2, y0 + side), (x0, y0 + side / 2)], **style
        )


def _backdrop(material: int, size: int, rng: np.random.Generator) -> Image.Image:
    tint, strength = list(MATERIALS.values())[material]
    noise = rng.normal(0.0, strength, (size // 4, size // 4, 1)).repeat(4, 0).repeat(4, 1)  # coarse grain
    pixels = np.clip(np.asarray(tint, dtype=np.float64) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def _contrast(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    luminance = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    return (250, 250, 250) if luminance < 128 else (30, 30, 30)


def _pattern_fill(pattern: str, colour: tuple[int, int, int], size: int) -> Image.Image:
    fill = Image.new("RGB", (size, size), colour)
    draw, other, step = ImageDraw.Draw(fill), _contrast(colour), max(4, size // 8)
    if pattern == "striped":
        for y in range(0, size, 2 * step):
            draw.rectangle((0, y, size, y + step // 2), fill=other)
    elif pattern == "polka-dot":
        for y in range(step // 2, size, step):
            for x in range(step // 2, size, step):
                r = step // 4
                draw.ellipse((x - r, y - r, x + r, y + r), fill=other)
    elif pattern == "checked":
        for y in range(0, size, step):
            for x in range((y // step) % 2 * step, size, 2 * step):
                draw.rectangle((x, y, x + step - 1, y + step - 1), fill=other)
    elif pattern == "zigzag":
        for y in range(0, size + step, step):
            points = [(x, y + (step // 2 if (x // step) % 2 else 0)) for x in range(0, size + step, step)]
            draw.line(points, fill=other, width=max(2, step // 4))
    elif pattern == "two-tone":
        draw.rectangle((size // 2, 0, size, size), fill=other)
    return fill


def _outline(image: Image.Image, mask: Image.Image, width: int) -> None:
    """Darken the mask's border `width` steps wide (0: no outline)."""
    if width == 0:
        return
    from PIL import ImageFilter

    grown = mask.filter(ImageFilter.MaxFilter(2 * width * SUPERSAMPLE + 1))
    border = np.asarray(grown, dtype=np.int16) - np.asarray(mask, dtype=np.int16)
    image.paste((20, 20, 20), (0, 0), Image.fromarray(np.clip(border, 0, 255).astype(np.uint8), "L"))


# --- glyphs: each draws the shape (fill 255) inside the box -------------------------------


def _at(box: Box, *points: float) -> list[tuple[float, float]]:
    """Box-relative coordinates (x0, y0, x1, y1, ... in [0, 1]) to pixels."""
    x0, y0, x1, y1 = box
    return [(x0 + (x1 - x0) * px, y0 + (y1 - y0) * py) for px, py in zip(points[::2], points[1::2])]


def _poly(*points: float) -> Callable[[ImageDraw.ImageDraw, Box], None]:
    return lambda draw, box: draw.polygon(_at(box, *points), fill=255)


def _ellipse(*corners: float) -> Callable[[ImageDraw.ImageDraw, Box], None]:
    return lambda draw, box: draw.ellipse(_flat(_at(box, *corners)), fill=255)


def _rect(*corners: float) -> Callable[[ImageDraw.ImageDraw, Box], None]:
    return lambda draw, box: draw.rectangle(_flat(_at(box, *corners)), fill=255)


def _flat(points: list[tuple[float, float]]) -> list[float]:
    return [c for point in points for c in point]


def _union(*parts: Callable) -> Callable[[ImageDraw.ImageDraw, Box], None]:
    def draw_all(draw: ImageDraw.ImageDraw, box: Box) -> None:
        for part in parts:
            part(draw, box)

    return draw_all


def _ring(draw: ImageDraw.ImageDraw, box: Box) -> None:
    draw.ellipse(_flat(_at(box, 0.1, 0.1, 0.9, 0.9)), fill=255)
    draw.ellipse(_flat(_at(box, 0.3, 0.3, 0.7, 0.7)), fill=0)
    draw.rectangle(_flat(_at(box, 0.4, 0.0, 0.6, 0.12)), fill=255)


def _wave(draw: ImageDraw.ImageDraw, box: Box) -> None:
    xs = np.linspace(0, 1, 25)
    top = [(x, 0.3 + 0.08 * np.sin(6 * x)) for x in xs]
    bottom = [(x, 0.75 + 0.08 * np.sin(6 * x)) for x in xs[::-1]]
    draw.polygon(_at(box, *[c for point in top + bottom for c in point]), fill=255)


SHAPES: dict[str, Callable[[ImageDraw.ImageDraw, Box], None]] = {
    "trapezoid": _poly(0.35, 0.0, 0.65, 0.0, 0.95, 1.0, 0.05, 1.0),
    "tee": _poly(
        0.0, 0.1, 0.35, 0.0, 0.65, 0.0, 1.0, 0.1, 0.9, 0.4, 0.75, 0.35, 0.75, 1.0, 0.25, 1.0, 0.25, 0.35, 0.1, 0.4
    ),
    "tall_rect": _rect(0.2, 0.0, 0.8, 1.0),
    "wide_ellipse": _ellipse(0.0, 0.3, 1.0, 0.75),
    "boot": _poly(0.2, 0.0, 0.55, 0.0, 0.55, 0.6, 1.0, 0.7, 1.0, 1.0, 0.2, 1.0),
    "wide_rect": _rect(0.0, 0.35, 1.0, 0.65),
    "bag": _union(
        _rect(0.1, 0.35, 0.9, 1.0),
        _poly(0.3, 0.35, 0.35, 0.05, 0.65, 0.05, 0.7, 0.35, 0.6, 0.35, 0.58, 0.15, 0.42, 0.15, 0.4, 0.35),
    ),
    "tall_ellipse": _ellipse(0.2, 0.0, 0.8, 1.0),
    "dome": _union(_ellipse(0.2, 0.1, 0.8, 0.8), _rect(0.0, 0.6, 1.0, 0.75)),
    "band": _poly(0.0, 0.2, 0.2, 0.0, 1.0, 0.8, 0.8, 1.0),
    "ring": _ring,
    "mug": _union(_rect(0.1, 0.15, 0.7, 1.0), _poly(0.7, 0.3, 0.95, 0.3, 0.95, 0.8, 0.7, 0.8)),
    "teapot": _union(
        _ellipse(0.15, 0.3, 0.85, 1.0), _poly(0.85, 0.6, 1.0, 0.3, 1.0, 0.4, 0.85, 0.8), _ellipse(0.4, 0.15, 0.6, 0.35)
    ),
    "rounded_rect": lambda draw, box: draw.rounded_rectangle(
        _flat(_at(box, 0.0, 0.15, 1.0, 0.85)), radius=(box[2] - box[0]) * 0.15, fill=255
    ),
    "lamp": _union(
        _poly(0.25, 0.0, 0.75, 0.0, 0.95, 0.45, 0.05, 0.45), _rect(0.45, 0.45, 0.55, 0.9), _rect(0.25, 0.9, 0.75, 1.0)
    ),
    "square": _rect(0.1, 0.1, 0.9, 0.9),
    "vase": _poly(0.35, 0.0, 0.65, 0.0, 0.6, 0.25, 0.9, 0.6, 0.7, 1.0, 0.3, 1.0, 0.1, 0.6, 0.4, 0.25),
    "wave": _wave,
    "book": _union(_rect(0.15, 0.0, 0.85, 1.0), _rect(0.05, 0.0, 0.15, 1.0)),
    "pens": _union(
        _poly(0.1, 0.0, 0.25, 0.0, 0.25, 0.85, 0.175, 1.0, 0.1, 0.85),
        _poly(0.425, 0.0, 0.575, 0.0, 0.575, 0.85, 0.5, 1.0, 0.425, 0.85),
        _poly(0.75, 0.0, 0.9, 0.0, 0.9, 0.85, 0.825, 1.0, 0.75, 0.85),
    ),
    "car": _union(
        _rect(0.0, 0.45, 1.0, 0.8),
        _poly(0.2, 0.45, 0.35, 0.2, 0.7, 0.2, 0.85, 0.45),
        _ellipse(0.1, 0.7, 0.35, 0.95),
        _ellipse(0.65, 0.7, 0.9, 0.95),
    ),
    "bear": _union(
        _ellipse(0.2, 0.2, 0.8, 0.75),
        _ellipse(0.15, 0.05, 0.4, 0.3),
        _ellipse(0.6, 0.05, 0.85, 0.3),
        _ellipse(0.25, 0.6, 0.75, 1.0),
    ),
    "mat": _union(_rect(0.0, 0.55, 1.0, 0.75), _ellipse(0.75, 0.35, 1.0, 0.75)),
    "bottle": _union(_rect(0.25, 0.25, 0.75, 1.0), _rect(0.38, 0.0, 0.62, 0.25)),
}
