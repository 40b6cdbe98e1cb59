"""The attribute vocabulary of the synthetic catalogue: what items are made of.

Every item has one value of each attribute. The same vocabulary drives the three views
of an item: its interactions (user tastes are preferences over these values), its
description (the words below) and its rendered image (shapes, RGB colours, patterns,
textures below).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Category:
    noun: str
    department: str
    shape: str  # glyph drawn by synthetic_render
    uses: tuple[str, ...]  # phrases for the description


CATEGORIES = (
    Category("dress", "clothing", "trapezoid", ("for summer parties", "for everyday wear")),
    Category("shirt", "clothing", "tee", ("for the office", "for casual weekends")),
    Category("jacket", "clothing", "tall_rect", ("for chilly evenings", "for rainy days")),
    Category("sneakers", "footwear", "wide_ellipse", ("for running", "for long walks")),
    Category("boots", "footwear", "boot", ("for hiking trails", "for winter snow")),
    Category("sandals", "footwear", "wide_rect", ("for the beach", "for hot days")),
    Category("handbag", "accessories", "bag", ("for evenings out", "for daily errands")),
    Category("backpack", "accessories", "tall_ellipse", ("for school", "for travel")),
    Category("hat", "accessories", "dome", ("for sunny days", "for the garden")),
    Category("scarf", "accessories", "band", ("for cold mornings", "as a gift")),
    Category("watch", "accessories", "ring", ("for daily wear", "for formal events")),
    Category("mug", "kitchen", "mug", ("for morning coffee", "for hot tea")),
    Category("teapot", "kitchen", "teapot", ("for afternoon tea", "for guests")),
    Category("cutting board", "kitchen", "rounded_rect", ("for meal prep", "for serving cheese")),
    Category("lamp", "home", "lamp", ("for the bedside", "for reading corners")),
    Category("cushion", "home", "square", ("for the sofa", "for the reading nook")),
    Category("vase", "home", "vase", ("for fresh flowers", "for the mantelpiece")),
    Category("blanket", "home", "wave", ("for movie nights", "for the guest room")),
    Category("notebook", "stationery", "book", ("for journaling", "for class notes")),
    Category("pen set", "stationery", "pens", ("for calligraphy", "for the desk")),
    Category("toy car", "toys", "car", ("for young racers", "for playtime")),
    Category("teddy bear", "toys", "bear", ("for bedtime", "as a birthday gift")),
    Category("yoga mat", "sports", "mat", ("for home workouts", "for the studio")),
    Category("water bottle", "sports", "bottle", ("for the gym", "for cycling")),
)

COLOURS = {
    "red": (200, 30, 40),
    "blue": (40, 80, 210),
    "green": (40, 150, 60),
    "yellow": (240, 210, 40),
    "black": (25, 25, 25),
    "white": (245, 245, 240),
    "pink": (240, 130, 180),
    "purple": (120, 50, 160),
    "orange": (245, 130, 30),
    "brown": (120, 75, 40),
    "grey": (130, 130, 130),
    "navy": (20, 30, 90),
}

PATTERNS = ("solid", "striped", "polka-dot", "checked", "zigzag", "two-tone")

# material -> (background RGB, texture strength): the material shows as the backdrop
MATERIALS = {
    "cotton": ((235, 228, 215), 6),
    "leather": ((150, 110, 80), 18),
    "wool": ((210, 200, 190), 28),
    "silk": ((225, 225, 245), 2),
    "denim": ((90, 110, 150), 14),
    "linen": ((220, 215, 195), 10),
    "bamboo": ((200, 190, 130), 12),
    "recycled plastic": ((180, 215, 220), 4),
}

STYLES = ("vintage", "modern", "minimalist", "sporty", "elegant", "bohemian", "classic", "playful")
STYLE_PHRASES = {
    "vintage": "retro details inspired by the seventies",
    "modern": "clean contemporary lines",
    "minimalist": "a simple understated look",
    "sporty": "an active athletic feel",
    "elegant": "a refined and graceful finish",
    "bohemian": "a relaxed free-spirited vibe",
    "classic": "a timeless traditional design",
    "playful": "fun cheerful accents",
}

PATTERN_PHRASES = {
    "solid": "a plain solid colour",
    "striped": "bold stripes",
    "polka-dot": "cheerful polka dots",
    "checked": "a checked plaid pattern",
    "zigzag": "a zigzag chevron print",
    "two-tone": "a two-tone colour block",
}

BRANDS = (
    "Nordvik",
    "Aurelia",
    "Kestrel",
    "Marlowe",
    "Tidewell",
    "Brambleton",
    "Solenne",
    "Quillon",
    "Harbour & Pine",
    "Lumen",
    "Ostara",
    "Wrenfield",
    "Cobalto",
    "Fennick",
    "Juniper Row",
    "Veloce",
    "Ambrose",
    "Pebblestone",
    "Saffra",
    "Trellis",
    "Oakhaven",
    "Mirabel",
    "Zephyr",
    "Calloway",
)

ATTRIBUTES = ("category", "colour", "pattern", "material", "style", "brand")


def attribute_sizes() -> dict[str, int]:
    """Number of values of each attribute."""
    return {
        "category": len(CATEGORIES),
        "colour": len(COLOURS),
        "pattern": len(PATTERNS),
        "material": len(MATERIALS),
        "style": len(STYLES),
        "brand": len(BRANDS),
    }
