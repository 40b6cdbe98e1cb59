"""The embedded synthetic dataset: latent interactions (`interactions`), generated descriptions
(`text`, `vocab`), rendered images (`render`), the generator (`generator`) and its command."""

from guider.data.synthetic.generator import NAME, PRESETS, make_synthetic
from guider.data.synthetic.interactions import LatentParams

__all__ = ["NAME", "PRESETS", "LatentParams", "make_synthetic"]
