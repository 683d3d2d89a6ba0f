"""The relaxed, differentiable trigger of BADSEG stage 2 (§5.2, Appendix B eq. 4).

The search space is the paper's Table 20 (``TRIGGER_GRIDS``): shape, size, position (object
vectors only), quantity and intensity, plus the pattern's base (checker, noise, solid,
stripes) and colour — single options (the configured pattern) unless the pattern is searched
(``search.pattern: search``). Given one soft one-hot weight vector ``w_a`` per
attribute, the relaxed trigger is

* shape: ``m = Σ_j w_shape[j] · soft_shape_mask(shape_j)`` (blend of the SDF masks);
* size: half width ``½ Σ_j w_size[j] · px_j``, ``px_j`` the j-th option's stamp width in
  pixels (``TriggerSpec.size_px``: at least ``min_size_px``), so the weight reaches the
  size even where the floor makes options equal;
* intensity: ``a = Σ_j w_int[j] · intensity_j``;
* quantity: the k-stamp renderings mixed by ``w_qty``; for non-overlapping stamps this is
  stamp r weighted by ``c_r = Σ_{q_j > r} w_qty[j]``;
* position: the renderings at each placement mixed by ``w_pos``; with ``search.cover`` the
  ``cover`` option (the ``cover`` placement, ``attacks.base.render_cover``) renders
  ``a·m_c·(texture − x)``, ``m_c`` the union of the selected regions' masks and the texture the
  mixed, tinted pattern tiled in image coordinates every ``size_px(width)`` native pixels of the
  sampled size option (each region's own width), resized as the images are; shape and
  quantity do not act on it (the region is the shape; there are no stamps to count);
* pattern and colour: ``p = (Σ_k w_pattern[k] · base_k) ⊙ (Σ_j w_colour[j] · rgb_j)``, the
  base patterns' 0/1 maps mixed, tinted by the mixed colour (``pattern_image`` for one-hot).

Rendering is the poisoning blend ``x + a·m·(pattern − x)`` summed over stamps (and the cover),
clipped to [0, 1]; with one-hot weights it is ``stamp_all``'s hard stamp up to the soft mask
edge, or ``render_cover``'s texture up to the mask's resized edge.
Where stamps go is planned once per image, at the files' native resolution and with
the attack's own selector and placements (exactly as poisoning does), for every
(position, size) option; the k-stamp rendering uses the first k stamps of a plan (the
placements draw the first stamp first, so that is a valid k-stamp plan). A plan that cannot
place a stamp renders nothing, so options that often do not fit cost loss, as skipped
samples cost poisoned images. The cover option places no stamps (its slots stay empty).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from badseg.attacks import PLACEMENTS, Attack
from badseg.attacks.placement import COVER
from badseg.attacks.regions import Region
from badseg.data.base import SegDataset
from badseg.poisoning.dataset import sample_rng
from badseg.data.resize import resize_images, resize_label, resize_pair
from badseg.triggers import (
    COLOURS,
    PATTERN_BASES,
    TRIGGER_GRIDS,
    base_pattern,
    colour_rgb,
    soft_shape_mask,
    split_pattern,
)

ATTRIBUTES: tuple[str, ...] = ("shape", "size", "position", "quantity", "intensity", "pattern", "colour")
#: Attributes that do not act on the ``cover`` placement (the region is the shape; no stamps to count).
COVER_IGNORES: tuple[str, ...] = ("shape", "quantity")
#: ``search.pattern`` value that makes the pattern's base and colour searchable.
SEARCH_PATTERN = "search"

#: Table 20's position options → the placements that implement them.
POSITION_PLACEMENTS: dict[str, str] = {"centre": "centre", "on_object": "random_inside",
                                       "outside_object": "random_outside"}

_NOISE_CELLS = 8  # the noise pattern is an 8×8 colour grid stretched over the stamp box
_TEXTURE_CACHE_BYTES = 256 * 2**20  # resized cover textures kept between renders


def search_space(attack: Attack, pattern: str = "checker", cover: bool = False,
                 options: Mapping[str, Sequence] | None = None) -> dict[str, tuple]:
    """Table-20 options for ``attack`` (INS/CON use the O2O or O2B grid by target kind).

    Every attribute is present; vectors without a position attribute (B2O, B2B) get the
    attack's own placement as their single position option. ``pattern`` is a trigger pattern
    (its base and colour are then single options) or ``"search"`` (every base and colour).
    ``options`` (``search.options``) replaces the named attributes' option lists, e.g.
    intensities below Table 20's 0.2; ``cover`` (``search.cover``) then appends the ``cover``
    placement to the position options.
    """
    if attack.name not in (*TRIGGER_GRIDS, "ins", "con"):
        raise ValueError(f"the BADSEG trigger search covers o2o, o2b, b2o, b2b, ins and con, not {attack.name!r}")
    key = attack.name if attack.name in TRIGGER_GRIDS else ("o2o" if attack.spec.is_object(attack.target) else "o2b")
    grid = dict(TRIGGER_GRIDS[key]) | {a: tuple(v) for a, v in (options or {}).items()}
    if "position" not in grid:
        grid["position"] = (attack.placement,)
    if cover and COVER not in grid["position"]:
        grid["position"] = (*grid["position"], COVER)
    return with_pattern(grid, pattern)


def with_pattern(grid: dict[str, tuple], pattern: str) -> dict[str, tuple]:
    """``grid``'s options with the pattern and colour attributes of ``pattern``: single options for
    a trigger pattern, every base and colour for ``"search"``, in ``ATTRIBUTES`` order."""
    if pattern == SEARCH_PATTERN:
        bases, colours = PATTERN_BASES, COLOURS
    else:
        base, colour = split_pattern(pattern)
        bases, colours = (base,), (colour,)
    return {a: tuple(grid[a]) for a in ATTRIBUTES if a not in ("pattern", "colour")} | {"pattern": bases,
                                                                                       "colour": colours}


def placement_of(position: str) -> str:
    """The placement name of a position option (B2O/B2B options and ``cover`` already are placements)."""
    return POSITION_PLACEMENTS.get(position, position)


@dataclass
class SearchSet:
    """Surrogate images with their poisoned labels and stamp plans, at the search's resolution
    (``stages.auto.search_size``: ``data.size``, or the native one under ``train.pipeline: crop``).

    N images, P position options, S size options, J stamp slots (regions × max quantity).

    Attributes:
        images: float (N, 3, H, W) in [0, 1], clean.
        targets: int64 (N, H, W), the poisoned labels y_t of eq. 3 (ignore = 255).
        labels: int64 (N, H, W), the clean labels.
        asr: bool (N, H, W), the ASR region (pixels relabelled to the target).
        cover: float (N, H, W), the reference width (native px) of the first selected region
            holding each pixel, 0 elsewhere (``cover_widths``): ``cover > 0`` is the mask the
            ``cover`` placement covers, the width sizes its tile there.
        centres: float (N, P, S, J, 2), stamp centres (row, col) in model pixels.
        ref_width: float (N, P, S, J), the width that sizes the stamp, in native pixels.
        rank: int64 (N, P, S, J), index of the stamp within its region's plan (0 = first).
        valid: bool (N, P, S, J), whether the slot holds a stamp.
        scale: float (N, 2), model / native pixel size (rows, cols).
        ids: sample ids; ``skipped``: reason → count of images the attack does not apply to.
        extra: more per-image tensors (N, ...) an objective needs, e.g. SAM prompts.
    """

    images: torch.Tensor
    targets: torch.Tensor
    labels: torch.Tensor
    asr: torch.Tensor
    cover: torch.Tensor
    centres: torch.Tensor
    ref_width: torch.Tensor
    rank: torch.Tensor
    valid: torch.Tensor
    scale: torch.Tensor
    ids: list[str]
    skipped: dict[str, int] = field(default_factory=dict)
    extra: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.images.shape[0]

    def to(self, device: torch.device | str) -> SearchSet:
        """A copy with every tensor on ``device``."""
        return SearchSet(self.images.to(device), self.targets.to(device), self.labels.to(device), self.asr.to(device),
                         self.cover.to(device), self.centres.to(device),
                         self.ref_width.to(device), self.rank.to(device), self.valid.to(device), self.scale.to(device),
                         self.ids, self.skipped, {k: v.to(device) for k, v in self.extra.items()})

    def batch(self, index: torch.Tensor | Sequence[int]) -> SearchSet:
        """The images at ``index`` (a new ``SearchSet`` sharing no state)."""
        idx = torch.as_tensor(index, dtype=torch.long, device=self.images.device)
        return SearchSet(self.images[idx], self.targets[idx], self.labels[idx], self.asr[idx], self.cover[idx],
                         self.centres[idx],
                         self.ref_width[idx], self.rank[idx], self.valid[idx], self.scale[idx],
                         [self.ids[i] for i in idx.tolist()], extra={k: v[idx] for k, v in self.extra.items()})


def _resize_instances(instances: np.ndarray | None, size: tuple[int, int]) -> np.ndarray | None:
    if instances is None or instances.shape == size:
        return instances
    t = torch.from_numpy(instances.astype(np.float32))[None, None]
    return F.interpolate(t, size=size, mode="nearest-exact")[0, 0].numpy().astype(np.int32)


def plan_options(regions: Sequence[tuple[np.ndarray, int]], avoid: np.ndarray, positions: Sequence[str],
                 sizes: Sequence[float], q_max: int, min_size_px: int, rng: np.random.Generator) -> np.ndarray:
    """Stamp plans of one image for every (position, size) option: float (P, S, R·q_max, 4) of
    (row, col, reference width, rank), NaN where a slot holds no stamp. ``regions`` are
    (mask, reference width) pairs; each gets as many stamps as fit, up to ``q_max``. The
    ``cover`` option places none (``RelaxedTrigger`` renders it from ``SearchSet.cover``)."""
    plan = np.full((len(positions), len(sizes), len(regions) * q_max, 4), np.nan)
    for p, position in enumerate(positions):
        if position == COVER:
            continue
        place = PLACEMENTS.get(placement_of(position))
        for s, frac in enumerate(sizes):
            for r, (mask, width) in enumerate(regions):
                px = max(min_size_px, int(round(frac * width)))
                for q in range(q_max, 0, -1):  # as many stamps as fit, up to the largest quantity
                    stamps = place(mask, avoid, px, q, rng)
                    if not isinstance(stamps, str):
                        for k, st in enumerate(stamps):
                            plan[p, s, r * q_max + k] = (*st.centre, width, k)
                        break
    return plan


def cover_widths(regions: Sequence[Region], shape: tuple[int, int]) -> np.ndarray:
    """float32 (H, W): each pixel's first selected region's width, 0 outside every region — the
    pixels ``render_cover`` covers and the width whose ``size_px`` is their tile."""
    out = np.zeros(shape, np.float32)
    for r in reversed(regions):  # the first region holding a pixel wins, as in render_cover
        out[r.mask] = r.width
    return out


def pack_search_set(rows: list[dict[str, Any]], skipped: dict[str, int]) -> SearchSet:
    """Rows of ``image`` (uint8 HxWx3), ``label`` (poisoned), ``clean`` (the clean label or mask),
    ``asr``, ``plan`` (``plan_options``), ``scale``, ``id`` (and optional ``cover``, float HxW
    ``cover_widths`` at model size, default none; ``extra``: name → tensor, stacked) → one ``SearchSet``."""
    first = rows[0]["plan"]
    j_max = max(r["plan"].shape[2] for r in rows)
    plans = np.full((len(rows), first.shape[0], first.shape[1], j_max, 4), np.nan)
    for n, r in enumerate(rows):
        plans[n, :, :, : r["plan"].shape[2]] = r["plan"]
    valid = ~np.isnan(plans[..., 0])
    plans = np.nan_to_num(plans)
    scale = torch.tensor([r["scale"] for r in rows], dtype=torch.float32)
    centres = torch.from_numpy(plans[..., :2]).float()
    centres = (centres + 0.5) * scale[:, None, None, None, :] - 0.5  # native pixel index → model pixel index
    extra = {k: torch.stack([r["extra"][k] for r in rows]) for k in sorted(rows[0].get("extra", {}))}
    return SearchSet(
        images=torch.from_numpy(np.stack([r["image"] for r in rows])).permute(0, 3, 1, 2).float().div(255),
        targets=torch.from_numpy(np.stack([r["label"] for r in rows])).long(),
        labels=torch.from_numpy(np.stack([r["clean"] for r in rows])).long(),
        asr=torch.from_numpy(np.stack([r["asr"] for r in rows])),
        cover=torch.from_numpy(np.stack([r.get("cover", np.zeros(r["asr"].shape, np.float32)) for r in rows])).float(),
        centres=centres, ref_width=torch.from_numpy(plans[..., 2]).float(),
        rank=torch.from_numpy(plans[..., 3]).long(), valid=torch.from_numpy(valid), scale=scale,
        ids=[r["id"] for r in rows], skipped=skipped, extra=extra,
    )


def build_search_set(dataset: SegDataset, attack: Attack, space: dict[str, tuple], size: tuple[int, int],
                     seed: int = 0, min_size_px: int = 4, limit: int | None = None) -> SearchSet:
    """Plan every (position, size) option on each image where ``attack`` applies.

    Regions and poisoned labels come from the attack's selector and relabel policy at the
    native resolution (sample ``i`` draws from ``sample_rng(seed, i)``); image and labels are
    then resized to ``size`` (labels, the ASR region and the cover widths nearest neighbour).
    ``limit`` caps the number of images used.
    """
    rows: list[dict[str, Any]] = []
    skipped: dict[str, int] = {}
    for i in range(len(dataset)):
        if limit is not None and len(rows) >= limit:
            break
        sample = dataset[i]
        rng = sample_rng(seed, i)
        regions = attack.select(sample.label, sample.instances, sample.image, rng, False)
        if isinstance(regions, str):
            skipped[regions] = skipped.get(regions, 0) + 1
            continue
        relabel = attack.relabel(sample.label, regions, attack.victim)
        poisoned = sample.label.copy()
        poisoned[relabel] = attack.target
        plan = plan_options([(r.mask, r.width) for r in regions], sample.label == attack.victim, space["position"],
                            space["size"], max(space["quantity"]), min_size_px, rng)
        image, label = resize_pair(sample.image, poisoned, size)
        _, asr = resize_pair(sample.image, relabel.astype(np.int64), size)
        cover = resize_label(cover_widths(regions, sample.label.shape), size).astype(np.float32)
        rows.append({"image": image, "label": label, "clean": resize_label(sample.label, size),
                     "asr": asr.astype(bool), "cover": cover, "plan": plan,
                     "scale": (size[0] / sample.label.shape[0], size[1] / sample.label.shape[1]), "id": sample.id})
    if not rows:
        raise ValueError(f"{attack.name} {attack.describe()['victim']} → {attack.describe()['target']} applies to "
                         f"none of the {len(dataset)} surrogate images ({skipped})")
    return pack_search_set(rows, skipped)


class RelaxedTrigger:
    """Differentiable rendering of the relaxed trigger (Appendix B eq. 4).

    Args:
        space: attribute → options (``search_space``); patterns are drawn exactly as
            ``pattern_image`` draws them for the sampled size option, and a ``cover``
            position option as ``render_cover`` draws its texture.
        min_size_px: stamp width (and cover tile) floor at native resolution (``TriggerSpec.min_size_px``).
        sharpness: edge sharpness of the soft masks (1 / edge width in model pixels); at 3 a
            pixel centre half a pixel inside the edge gets 0.82 of the hard mask's weight.

    Example:
        >>> r = RelaxedTrigger(space)
        >>> w = {a: F.one_hot(torch.tensor(0), len(o)).float() for a, o in space.items()}
        >>> triggered = r.render(search_set.batch([0, 1]), w)   # (2, 3, H, W)
    """

    def __init__(self, space: dict[str, tuple], min_size_px: int = 4, sharpness: float = 3.0) -> None:
        self.space = space
        self.shapes = tuple(space["shape"])
        self.sizes = torch.tensor(space["size"], dtype=torch.float32)
        self.quantities = torch.tensor(space["quantity"], dtype=torch.float32)
        self.intensities = torch.tensor(space["intensity"], dtype=torch.float32)
        self.bases = tuple(space["pattern"])
        self.colours = torch.from_numpy(np.stack([colour_rgb(c) for c in space["colour"]]) / 255.0).float()  # (C, 3)
        self.noise = torch.from_numpy(base_pattern("noise", _NOISE_CELLS)).float()  # (8, 8, 3)
        self.min_size_px = min_size_px
        self.sharpness = sharpness
        positions = tuple(space["position"])
        self.cover = positions.index(COVER) if COVER in positions else None  # the cover option's index
        self._textures: OrderedDict[tuple, torch.Tensor] = OrderedDict()  # least recently used first

    @staticmethod
    def _box_index(offset: torch.Tensor, scale: torch.Tensor, px: torch.Tensor) -> torch.Tensor:
        """Native pixel index inside a ``px``-wide stamp box of model-pixel offsets (K, win) from its centre."""
        i = torch.floor(offset / scale[:, None] + (px[:, None] - 1) / 2 + 0.5)
        return torch.minimum(i.clamp_min(0), px[:, None] - 1).long()

    def _base(self, base: str, iy: torch.Tensor, ix: torch.Tensor, px: torch.Tensor) -> torch.Tensor:
        """``base_pattern(base, px)`` looked up at box indices (K, win, win) → (K, win, win, 3) in {0, 1}."""
        px = px.long()[:, None, None]
        if base in ("checker", "stripes"):  # cells of px // 4 pixels, as base_pattern
            cell = (px // 4).clamp_min(1)
            board = (((iy // cell + ix // cell) if base == "checker" else ix // cell) % 2).float()
            return board[..., None].expand(*board.shape, 3)
        if base == "solid":
            return torch.ones(*iy.shape, 3, device=iy.device)
        cells = self.noise.shape[0]
        table = self.noise.to(iy.device)
        return table[(iy * cells // px).clamp_max(cells - 1), (ix * cells // px).clamp_max(cells - 1)]

    def _colour(self, weights: dict[str, torch.Tensor], device: torch.device) -> torch.Tensor:
        """The mixed colour (3,) in [0, 1]."""
        return (weights["colour"][:, None] * self.colours.to(device)).sum(0)

    def _pattern(self, iy: torch.Tensor, ix: torch.Tensor, px: torch.Tensor,
                 weights: dict[str, torch.Tensor]) -> torch.Tensor:
        """The mixed, tinted pattern at box indices (K, win, win) → (K, win, win, 3) in [0, 1]."""
        mixed = sum(weights["pattern"][k] * self._base(b, iy, ix, px) for k, b in enumerate(self.bases))
        return mixed * self._colour(weights, iy.device)

    def _texture(self, base: str, tile: int, native: tuple[int, int], size: tuple[int, int],
                 device: torch.device) -> torch.Tensor:
        """``base``'s 0/1 map tiled every ``tile`` px from the top-left corner of a ``native``
        image (``tiled_pattern``, built on ``device``), resized to ``size`` as the images are
        (``resize_images``) → (3, H, W); cached (least recently used out beyond 256 MiB)."""
        key = (base, tile, native, size, str(device))
        if key in self._textures:
            self._textures.move_to_end(key)
            return self._textures[key]
        cell = torch.from_numpy(base_pattern(base, tile)).to(device)  # (tile, tile, 3)
        rows, cols = (torch.arange(n, device=device) % tile for n in native)
        texture = resize_images(cell[rows][:, cols].permute(2, 0, 1)[None], size)[0]
        self._textures[key] = texture
        while sum(t.numel() * t.element_size() for t in self._textures.values()) > _TEXTURE_CACHE_BYTES:
            self._textures.popitem(last=False)
        return texture

    def _cover_texture(self, batch: SearchSet, s: int, weights: dict[str, torch.Tensor]) -> torch.Tensor:
        """The mixed, tinted cover texture (B, 3, H, W) in [0, 1] on the cover pixels (0 elsewhere):
        each region's tile is size option ``s``'s ``size_px`` of its width, phase fixed at the
        native image's top-left corner, as ``render_cover`` tiles it."""
        x = batch.images
        b, _, h, w = x.shape
        tile = torch.clamp(torch.round(float(self.space["size"][s]) * batch.cover.double()), min=self.min_size_px)
        tiles = torch.where(batch.cover > 0, tile, 0).long()  # native px, (B, H, W)
        rows = []
        for n in range(b):
            native = (round(h / float(batch.scale[n, 0])), round(w / float(batch.scale[n, 1])))
            row = x.new_zeros(3, h, w)
            for t in torch.unique(tiles[n]).tolist():
                if t > 0:
                    mixed = sum(weights["pattern"][k] * self._texture(base, t, native, (h, w), x.device)
                                for k, base in enumerate(self.bases))
                    row = torch.where(tiles[n] == t, mixed, row)
            rows.append(row)
        return torch.stack(rows) * self._colour(weights, x.device)[None, :, None, None]

    def render(self, batch: SearchSet, weights: dict[str, torch.Tensor], plan_size: int | None = None) -> torch.Tensor:
        """Triggered images (B, 3, H, W) in [0, 1] for soft one-hot ``weights`` (attribute → (n_options,)).

        Stamp positions and the cover's tile follow size option ``plan_size``, by default the
        one with the largest weight (the sampled option when the weights are near one-hot);
        everything else is differentiable.
        """
        x = batch.images
        s = int(torch.argmax(weights["size"])) if plan_size is None else plan_size
        alpha = (weights["intensity"] * self.intensities.to(x.device)).sum()
        out = x + self._stamps(batch, weights, s, alpha)
        if self.cover is not None:
            m = (batch.cover > 0).to(x.dtype)[:, None]
            out = out + weights["position"][self.cover] * alpha * m * (self._cover_texture(batch, s, weights) - x)
        return out.clamp(0.0, 1.0)

    def _stamps(self, batch: SearchSet, weights: dict[str, torch.Tensor], s: int, alpha: torch.Tensor) -> torch.Tensor:
        """The stamps' blend ``Σ a·c·m·(pattern − x)`` (B, 3, H, W) on the plans of size option ``s``."""
        x = batch.images
        dev = x.device
        b, _, h, w = x.shape
        centres, ref, rank, valid = (batch.centres[:, :, s], batch.ref_width[:, :, s], batch.rank[:, :, s],
                                     batch.valid[:, :, s])  # (B, P, J, ...)
        option_px = torch.clamp(torch.round(self.sizes.to(dev) * ref[..., None]), min=self.min_size_px)  # (B,P,J,S)
        width = (option_px * weights["size"]).sum(-1)  # native px, (B, P, J)
        coef = (weights["quantity"] * (rank[..., None] < self.quantities.to(dev)).float()).sum(-1)  # (B, P, J)
        coef = coef * weights["position"][None, :, None]

        nb, p_idx, j_idx = torch.nonzero(valid, as_tuple=True)
        if nb.numel() == 0:
            return 0.0 * alpha * x
        cy, cx = centres[nb, p_idx, j_idx].unbind(-1)
        half_y = 0.5 * width[nb, p_idx, j_idx] * batch.scale[nb, 0]
        half_x = 0.5 * width[nb, p_idx, j_idx] * batch.scale[nb, 1]
        half = torch.sqrt(half_y * half_x)
        edge = int(math.ceil(6.0 / self.sharpness))  # the soft mask is < 0.3% beyond this distance
        win = int(math.ceil(float(width.detach().max()) * float(batch.scale.max()))) + 2 * edge + 1
        grid = torch.arange(win, device=dev)
        y0 = torch.round(cy).long() - win // 2
        x0 = torch.round(cx).long() - win // 2
        ys, xs = y0[:, None] + grid, x0[:, None] + grid  # (K, win) pixel indices
        dy = ((ys.float() - cy[:, None]) * (half / half_y)[:, None])[:, :, None]  # (K, win, 1)
        dx = ((xs.float() - cx[:, None]) * (half / half_x)[:, None])[:, None, :]  # (K, 1, win)
        hh = half[:, None, None]
        mask = sum(weights["shape"][k] * soft_shape_mask(sh, dx, dy, hh, self.sharpness)
                   for k, sh in enumerate(self.shapes))  # (K, win, win)
        px = option_px[..., s][nb, p_idx, j_idx]  # native width of the sampled size option, (K,)
        iy = self._box_index(ys.float() - cy[:, None], batch.scale[nb, 0], px)[:, :, None]  # (K, win, 1)
        ix = self._box_index(xs.float() - cx[:, None], batch.scale[nb, 1], px)[:, None, :]  # (K, 1, win)
        pattern = self._pattern(iy.expand(-1, -1, win), ix.expand(-1, win, -1), px, weights)  # (K, win, win, 3)

        pad = win
        xp = F.pad(x, (pad, pad, pad, pad))
        yy = (ys + pad)[:, :, None].expand(-1, -1, win)
        xx = (xs + pad)[:, None, :].expand(-1, win, -1)
        clean = xp.permute(0, 2, 3, 1)[nb[:, None, None], yy, xx]  # (K, win, win, 3)
        delta = (alpha * coef[nb, p_idx, j_idx])[:, None, None, None] * mask[..., None] * (pattern - clean)
        hp, wp = h + 2 * pad, w + 2 * pad
        flat = (nb[:, None, None] * hp + yy) * wp + xx
        canvas = torch.zeros(b * hp * wp, 3, dtype=x.dtype, device=dev)
        canvas = canvas.index_add(0, flat.reshape(-1), delta.reshape(-1, 3))
        return canvas.view(b, hp, wp, 3)[:, pad: pad + h, pad: pad + w].permute(0, 3, 1, 2)


def one_hot_weights(space: dict[str, tuple], chosen: dict[str, int]) -> dict[str, torch.Tensor]:
    """Exact one-hot weights for option indices ``chosen`` (attribute → index; an attribute with
    a single option may be left out)."""
    missing = [a for a in ATTRIBUTES if a not in chosen and len(space[a]) > 1]
    if missing:
        raise ValueError(f"no option chosen for {', '.join(missing)}")
    return {a: F.one_hot(torch.tensor(chosen.get(a, 0)), len(space[a])).float() for a in ATTRIBUTES}


__all__ = ["ATTRIBUTES", "POSITION_PLACEMENTS", "SEARCH_PATTERN", "RelaxedTrigger", "SearchSet", "build_search_set",
           "cover_widths", "one_hot_weights", "pack_search_set", "placement_of", "plan_options", "search_space",
           "with_pattern"]
