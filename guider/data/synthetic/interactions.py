"""The latent model behind the synthetic interactions: item attributes, user tastes, draws.

Items get one value of each attribute (synthetic_vocab.ATTRIBUTES), a log-normal
intrinsic popularity and hidden "ID" factors that no content view shows. A user's taste
is a Dirichlet-distributed preference over the values of each attribute (concentrated on
a few categories, softer over colours, styles, ...) plus hidden factors. The utility of
item i for user u is

    ( sum_a w_a log taste_u,a[value_i,a]  +  w_pop z_i  +  w_id <p_u, q_i> / sqrt(d) ) / temperature

and a user's items are a draw without replacement from softmax(utility) (Gumbel top-k).
Tastes live in attribute space, so an item's content predicts who likes it even when
it has few interactions; popularity and the hidden factors give ID-only models a signal
of their own. Every user gets at least `min_user_degree` items and every item is topped
up to `min_item_degree` interactions by the users who like it most ("5-core-ish").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from guider.data.synthetic.vocab import ATTRIBUTES, CATEGORIES, attribute_sizes

START_TIME = 1_356_998_400  # 2013-01-01, the Amazon 2014 datasets' last years
DAY = 86_400


@dataclass
class LatentParams:
    """Generator parameters (all recorded in dataset.json)."""

    min_user_degree: int = 5
    min_item_degree: int = 5
    category_concentration: float = 0.08  # Dirichlet alpha: small = a few favourite categories
    attribute_concentration: float = 0.5  # Dirichlet alpha of the other attributes
    weights: dict[str, float] = field(
        default_factory=lambda: {
            "category": 1.0,
            "colour": 0.6,
            "pattern": 0.8,
            "material": 0.3,
            "style": 0.6,
            "brand": 1.0,
        }
    )
    popularity_weight: float = 0.7  # on the item's standardised log-popularity
    id_factor_dim: int = 8
    id_weight: float = 0.3
    temperature: float = 1.6  # utilities are divided by it: higher = noisier choices
    max_user_share: float = 0.25  # no user takes more than this share of the catalogue
    active_days: int = 730  # users start within this window

    def __post_init__(self) -> None:
        unknown = set(self.weights) - set(ATTRIBUTES)
        if unknown:
            raise ValueError(f"synthetic taste weights name unknown attributes {sorted(unknown)}; known: {ATTRIBUTES}")
        positive = {
            "temperature": self.temperature,
            "category_concentration": self.category_concentration,
            "attribute_concentration": self.attribute_concentration,
        }
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"synthetic {name} must be > 0, got {value}")
        if self.min_user_degree < 3 or self.min_item_degree < 1:
            raise ValueError(
                "synthetic min_user_degree must be >= 3 (one train, valid and test row) and min_item_degree >= 1"
            )

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Latent:
    """The drawn hidden state: item attributes, popularity, tastes and hidden factors."""

    item_attrs: pd.DataFrame  # [n_items, ATTRIBUTES] int value indices
    popularity: np.ndarray  # [n_items] standardised log-popularity
    tastes: dict[str, np.ndarray]  # attribute -> [n_users, n_values] log preferences
    user_factors: np.ndarray  # [n_users, d]
    item_factors: np.ndarray  # [n_items, d]


def draw_items(n_items: int, rng: np.random.Generator) -> pd.DataFrame:
    """Attribute value indices of each item; brands specialise in a few categories."""
    sizes = attribute_sizes()
    attrs = {a: rng.integers(sizes[a], size=n_items) for a in ATTRIBUTES if a != "brand"}
    brands_of_category = np.stack([rng.choice(sizes["brand"], 4, replace=False) for _ in CATEGORIES])  # [C, 4]
    attrs["brand"] = brands_of_category[attrs["category"], rng.integers(4, size=n_items)]
    return pd.DataFrame(attrs)[list(ATTRIBUTES)]


def draw_latent(n_users: int, item_attrs: pd.DataFrame, params: LatentParams, rng: np.random.Generator) -> Latent:
    sizes = attribute_sizes()
    tastes = {}
    for attribute in ATTRIBUTES:
        alpha = params.category_concentration if attribute == "category" else params.attribute_concentration
        prefs = rng.dirichlet(np.full(sizes[attribute], alpha), size=n_users)  # [U, n_values]
        tastes[attribute] = np.log(np.maximum(prefs, 1e-6))
    log_pop = rng.normal(0.0, 1.0, len(item_attrs))
    d = params.id_factor_dim
    return Latent(item_attrs, log_pop, tastes, rng.normal(size=(n_users, d)), rng.normal(size=(len(item_attrs), d)))


def utility(latent: Latent, params: LatentParams, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
    """[len(users), len(items)] utilities (all items when `items` is None)."""
    attrs = latent.item_attrs if items is None else latent.item_attrs.iloc[items]
    items = np.arange(len(latent.item_attrs)) if items is None else items
    total = np.zeros((len(users), len(items)))
    for attribute, weight in params.weights.items():
        total += weight * latent.tastes[attribute][users][:, attrs[attribute].to_numpy()]  # [u, i]
    total += params.popularity_weight * latent.popularity[items][None, :]
    hidden = latent.user_factors[users] @ latent.item_factors[items].T / np.sqrt(params.id_factor_dim)  # [u, i]
    return (total + params.id_weight * hidden) / params.temperature


def user_degrees(n_users: int, n_items: int, mean_degree: float, params: LatentParams, rng) -> np.ndarray:
    """Interactions per user: min_user_degree plus a geometric tail with the requested mean."""
    extra = max(mean_degree - params.min_user_degree, 1e-3)
    tail = rng.geometric(1.0 / (1.0 + extra), size=n_users) - 1
    cap = max(params.min_user_degree, int(params.max_user_share * n_items))
    return np.minimum(params.min_user_degree + tail, cap)


def draw_interactions(
    latent: Latent, params: LatentParams, degrees: np.ndarray, rng, chunk: int = 1024
) -> pd.DataFrame:
    """(userID, itemID, utility) rows: each user's items drawn from softmax(utility)."""
    frames = []
    for start in range(0, len(degrees), chunk):
        users = np.arange(start, min(start + chunk, len(degrees)))
        util = utility(latent, params, users)  # [c, I]
        perturbed = util + rng.gumbel(size=util.shape)
        k = int(degrees[users].max())
        top = np.argpartition(-perturbed, k - 1, axis=1)[:, :k]  # [c, k] unordered
        order = np.take_along_axis(top, np.argsort(-np.take_along_axis(perturbed, top, 1), axis=1), 1)
        keep = np.arange(k)[None, :] < degrees[users][:, None]  # [c, k]
        rows, cols = np.nonzero(keep)
        items = order[rows, cols]
        frames.append(pd.DataFrame({"userID": users[rows], "itemID": items, "utility": util[rows, items]}))
    return pd.concat(frames, ignore_index=True)


def top_up_items(inter: pd.DataFrame, latent: Latent, params: LatentParams, n_users: int, rng) -> pd.DataFrame:
    """Add interactions to items below min_item_degree, from the users who like them most."""
    n_items = len(latent.item_attrs)
    degree = np.bincount(inter["itemID"], minlength=n_items)
    short = np.flatnonzero(degree < params.min_item_degree)
    if len(short) == 0:
        return inter
    util = utility(latent, params, np.arange(n_users), short)  # [U, S]
    perturbed = util + rng.gumbel(size=util.shape)
    taken = inter[inter["itemID"].isin(short)]
    column = pd.Series(np.arange(len(short)), index=short)
    perturbed[taken["userID"].to_numpy(), column[taken["itemID"]].to_numpy()] = -np.inf
    need = params.min_item_degree - degree[short]  # [S]
    k = int(need.max())
    top = np.argsort(-perturbed, axis=0)[:k]  # [k, S] best users per short item
    rows, cols = np.nonzero(np.arange(k)[:, None] < need[None, :])
    free = np.isfinite(perturbed[top[rows, cols], cols])  # False only when too few users are left
    rows, cols = rows[free], cols[free]
    users, items = top[rows, cols], short[cols]
    added = pd.DataFrame({"userID": users, "itemID": items, "utility": util[users, cols]})
    return pd.concat([inter, added], ignore_index=True)


def add_timestamps_and_ratings(inter: pd.DataFrame, params: LatentParams, rng) -> pd.DataFrame:
    """A plausible history per user (start day, exponential gaps, random order) and ratings
    from the rank of the item's utility among the user's items (liked most = 5 stars)."""
    inter = inter.sample(frac=1.0, random_state=rng.integers(2**31)).reset_index(drop=True)
    inter = inter.sort_values("userID", kind="stable").reset_index(drop=True)
    n_users = int(inter["userID"].max()) + 1
    start = START_TIME + rng.integers(0, params.active_days * DAY, size=n_users)
    gaps = rng.exponential(7 * DAY, size=len(inter)).astype(np.int64) + 3600
    inter["timestamp"] = start[inter["userID"]] + pd.Series(gaps).groupby(inter["userID"]).cumsum().to_numpy()
    quantile = inter.groupby("userID")["utility"].rank(ascending=False, pct=True).to_numpy()
    inter["rating"] = np.select([quantile <= 0.5, quantile <= 0.8, quantile <= 0.95], [5.0, 4.0, 3.0], 2.0)
    return inter
