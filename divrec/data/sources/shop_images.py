"""Rendered item images for ``shop_sim`` (``data.render_images=true``).

Each item gets a small RGB PNG whose *visual* features carry its category: the shape is its
department's (disc, square, diamond, triangle, ring, cross, stripes, half disc: one per
department) and the fill colour its leaf's (58 leaves on distinct points of a 4 x 4 x 4 grid
of RGB levels 32/96/160/224, assigned by a permutation), on a mid-grey background. Per item:
colour jitter ``N(0, 12)`` per channel, centre offset up to 12% of the side, size
``U(0.75, 1.0)`` and pixel noise ``N(0, 8)``.

All randomness comes from ``numpy.random.default_rng([seed, 6])``, separate from the shop's
own generator, so rendering never changes items, users or interactions. Images are written
once to ``<image_dir>/shop_sim-<key>/<item_id>.png`` (key: seed, catalogue size, image size,
renderer version) through :func:`~divrec.utils.io.atomic_dir`, and reused afterwards.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from divrec.errors import ConfigError
from divrec.utils.io import atomic_dir, fingerprint

RENDER_VERSION = "shop-images-v1"
SHAPES = ("disc", "square", "diamond", "triangle", "ring", "cross", "stripes", "half_disc")
LEVELS = (32, 96, 160, 224)
BACKGROUND = 128


def default_image_dir() -> Path:
    """``$DIVREC_CACHE_DIR/shop_sim_images``, else ``.cache/divrec/shop_sim_images``."""
    return Path(os.environ.get("DIVREC_CACHE_DIR") or ".cache/divrec") / "shop_sim_images"


def leaf_colours(n_leaves: int, rng: np.random.Generator) -> np.ndarray:
    """Distinct grid colours, one per leaf: ``[n_leaves, 3]`` float in [0, 255]."""
    grid = np.array([(r, g, b) for r in LEVELS for g in LEVELS for b in LEVELS], dtype=float)
    if n_leaves > len(grid):
        raise ConfigError(f"shop_sim: at most {len(grid)} leaves can have distinct colours")
    return grid[rng.permutation(len(grid))[:n_leaves]]


def shape_masks(shape: int, dx: np.ndarray, dy: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Pixels inside shape ``SHAPES[shape]``: offsets ``dx, dy [n, S, S]`` from each item's
    centre, radii ``r [n, 1, 1]`` (all in units of half the side) -> bool ``[n, S, S]``."""
    ax, ay, d = np.abs(dx), np.abs(dy), np.hypot(dx, dy)
    name = SHAPES[shape % len(SHAPES)]
    if name == "disc":
        return d <= r
    if name == "square":
        return np.maximum(ax, ay) <= 0.85 * r
    if name == "diamond":
        return ax + ay <= 1.1 * r
    if name == "triangle":  # apex up (y grows downwards)
        return (dy <= 0.8 * r) & (ax <= 0.55 * (dy + r))
    if name == "ring":
        return (d <= r) & (d >= 0.55 * r)
    if name == "cross":
        return ((ax <= 0.3 * r) & (ay <= r)) | ((ay <= 0.3 * r) & (ax <= r))
    if name == "stripes":
        band = np.floor((dy + r) / (0.4 * r)).astype(int) % 2 == 0
        return (ax <= 0.9 * r) & (ay <= 0.9 * r) & band
    return (d <= r) & (dy >= -0.1 * r)  # half disc


def render_pixels(
    leaf_of_item: np.ndarray, dept_of_leaf: np.ndarray, seed: int, size: int = 32
) -> np.ndarray:
    """Images of every item: ``leaf_of_item [N]``, ``dept_of_leaf [L]`` -> uint8 ``[N, S, S, 3]``."""
    if not isinstance(size, int) or not 8 <= size <= 256:
        raise ConfigError(f"shop_sim: image_size={size!r} must be an int in [8, 256]")
    rng = np.random.default_rng([int(seed), 6])
    colours = leaf_colours(len(dept_of_leaf), rng)
    n = len(leaf_of_item)
    colour = colours[leaf_of_item] + rng.normal(0.0, 12.0, (n, 3))  # [N, 3]
    centre = rng.uniform(-0.12, 0.12, (n, 2))
    radius = rng.uniform(0.75, 1.0, n) * 0.8
    noise = rng.normal(0.0, 8.0, (n, size, size, 3))
    axis = (np.arange(size) + 0.5) / size * 2.0 - 1.0  # pixel centres in [-1, 1]
    dx = axis[None, None, :] - centre[:, 0, None, None]
    dy = axis[None, :, None] - centre[:, 1, None, None]
    inside = np.zeros((n, size, size), dtype=bool)
    shape_of_item = dept_of_leaf[leaf_of_item]
    for s in np.unique(shape_of_item):
        rows = np.flatnonzero(shape_of_item == s)
        inside[rows] = shape_masks(int(s), dx[rows], dy[rows], radius[rows, None, None])
    img = np.where(inside[..., None], colour[:, None, None, :], float(BACKGROUND)) + noise
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def render_shop_images(
    item_ids: list[str],
    leaf_of_item: np.ndarray,
    dept_of_leaf: np.ndarray,
    seed: int,
    size: int = 32,
    image_dir: str | os.PathLike | None = None,
) -> list[str]:
    """Write (once) and return the PNG path of every item ``[N]`` (see module docstring)."""
    from PIL import Image

    root = Path(image_dir).expanduser() if image_dir else default_image_dir()
    key = fingerprint(RENDER_VERSION, int(seed), len(item_ids), int(size))
    folder = root / f"shop_sim-{key}"
    paths = [folder / f"{iid}.png" for iid in item_ids]
    if not folder.is_dir():
        pixels = render_pixels(leaf_of_item, dept_of_leaf, seed, size)
        with atomic_dir(folder) as tmp:
            for iid, px in zip(item_ids, pixels, strict=True):
                Image.fromarray(px).save(tmp / f"{iid}.png", optimize=False)
    return [str(p.resolve()) for p in paths]
