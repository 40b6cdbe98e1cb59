"""English product descriptions of synthetic items, written from their attributes.

A description names every attribute (category noun, colour, pattern, material, style,
brand) inside one of several templates, plus a use phrase of the category and an
optional filler sentence, so that descriptions of similar items are similar without
being identical.
"""

from __future__ import annotations

import numpy as np

from guider.data.synthetic.vocab import (
    BRANDS,
    CATEGORIES,
    COLOURS,
    MATERIALS,
    PATTERN_PHRASES,
    PATTERNS,
    STYLE_PHRASES,
    STYLES,
)

TEMPLATES = (
    "{brand} {style} {colour} {pattern_word}{material} {noun}. "
    "Features {pattern_phrase} and {style_phrase}. Ideal {use}.",
    "{article} {style} {pattern_word}{noun} by {brand}, "
    "made of {material} in {colour} with {pattern_phrase}. Perfect {use}.",
    "{colour_cap} {pattern_word}{material} {noun} from {brand}, in a {style} style with {style_phrase}. Great {use}.",
)
FILLERS = (
    "",
    "",
    "Ships in recyclable packaging.",
    "Backed by a one-year warranty.",
    "A customer favourite.",
    "Easy to clean.",
    "Available while stocks last.",
    "Makes a thoughtful gift.",
)


def describe(attrs: dict[str, int], rng: np.random.Generator) -> str:
    """One description of an item with attribute value indices `attrs` (see ATTRIBUTES)."""
    category = CATEGORIES[attrs["category"]]
    colour = list(COLOURS)[attrs["colour"]]
    pattern = PATTERNS[attrs["pattern"]]
    style = STYLES[attrs["style"]]
    words = {
        "brand": BRANDS[attrs["brand"]],
        "style": style,
        "colour": colour,
        "colour_cap": colour.capitalize(),
        "material": list(MATERIALS)[attrs["material"]],
        "noun": category.noun,
        "article": "A pair of" if category.department == "footwear" else ("An" if style[0] in "aeiou" else "A"),
        "pattern_phrase": PATTERN_PHRASES[pattern],
        "pattern_word": "plain " if pattern == "solid" else f"{pattern} ",
        "style_phrase": STYLE_PHRASES[style],
        "use": category.uses[rng.integers(len(category.uses))],
    }
    text = TEMPLATES[rng.integers(len(TEMPLATES))].format(**words)
    filler = FILLERS[rng.integers(len(FILLERS))]
    return f"{text} {filler}".strip()
