"""Figures for reports: sample panels, poisoning contact sheets, prediction grids, training curves,
sweep plots (a metric against a swept value).

Matplotlib on the Agg canvas (no pyplot state, safe in workers); every figure is written to a
temporary file in the destination folder and moved into place with ``os.replace``, so a reader
never sees a half-written PNG.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import hsv_to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from badseg.data.io import atomic_open
from badseg.data.types import DatasetSpec, Sample

_CELL_IN = 2.8  # width of one image cell in inches
_DPI = 100
_TRIGGER_OUTLINE = "#00ffff"
_LEGEND_ENTRY_IN = 1.9  # width of one legend entry in inches


def label_overlay(image: np.ndarray, label: np.ndarray, spec: DatasetSpec, alpha: float = 0.5) -> np.ndarray:
    """``image`` blended with ``spec.colorize(label)``; ignore (and out-of-range) pixels keep the image."""
    out = image.astype(np.float64)
    valid = (label >= 0) & (label < spec.num_classes)
    out[valid] = (1.0 - alpha) * out[valid] + alpha * spec.palette[label[valid]].astype(np.float64)
    return np.rint(out).astype(np.uint8)


def instance_colors(instances: np.ndarray, seed: int = 0) -> np.ndarray:
    """RGB uint8 map with one distinct colour per instance id (0 = none stays black)."""
    ids, inverse = np.unique(instances, return_inverse=True)
    rng = np.random.default_rng(seed)
    n = len(ids)
    hsv = np.stack(
        [rng.permutation(n) / max(n, 1), rng.uniform(0.55, 1.0, n), rng.uniform(0.7, 1.0, n)], axis=1
    )
    colors = np.rint(hsv_to_rgb(hsv) * 255).astype(np.uint8)
    colors[ids == 0] = 0
    return colors[inverse.reshape(instances.shape)]


def _present_classes(labels: Iterable[np.ndarray], spec: DatasetSpec) -> list[int]:
    present: set[int] = set()
    for label in labels:
        present.update(int(c) for c in np.unique(label) if 0 <= c < spec.num_classes)
    return sorted(present)


def _legend_columns(n_cols: int) -> int:
    return max(1, int((n_cols * _CELL_IN + 0.6) / _LEGEND_ENTRY_IN))


def _class_legend(fig: Figure, class_ids: Sequence[int], spec: DatasetSpec, ncol: int) -> None:
    handles = [
        Patch(facecolor=spec.palette[c] / 255.0, edgecolor="black", label=f"{spec.classes[c]} ({spec.kinds[c]})")
        for c in class_ids
    ]
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=max(1, min(ncol, len(handles))), frameon=False, fontsize=9)


def _new_figure(n_rows: int, n_cols: int, aspect: float, legend_rows: int, title: str) -> tuple[Figure, np.ndarray]:
    """Figure with an (n_rows, n_cols) grid of image axes; ``aspect`` = image height / width."""
    cell_h = _CELL_IN * aspect + 0.35  # room for a column title
    top_in = 0.5 if title else 0.3
    bottom_in = 0.3 * legend_rows + 0.1
    height = n_rows * cell_h + top_in + bottom_in
    fig = Figure(figsize=(n_cols * _CELL_IN + 0.6, height), dpi=_DPI)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(
        left=0.6 / (n_cols * _CELL_IN + 0.6), right=0.995, top=1 - top_in / height, bottom=bottom_in / height,
        wspace=0.04, hspace=0.35 / (_CELL_IN * aspect),
    )
    axes = np.asarray(fig.subplots(n_rows, n_cols, squeeze=False))
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=12, y=1 - 0.1 / height, va="top")
    return fig, axes


def _show(ax: Axes, img: np.ndarray, title: str = "") -> None:
    ax.imshow(img, interpolation="nearest")
    if title:
        ax.set_title(title, fontsize=10)


def _outline(ax: Axes, mask: np.ndarray, color: str, width: float = 1.5) -> None:
    """Outline a bool mask with a dark halo under a coloured line (legible on any background)."""
    if mask.any() and not mask.all():
        m = np.pad(mask.astype(float), 1)  # closes contours that touch the border
        xs, ys = np.arange(-1, mask.shape[1] + 1), np.arange(-1, mask.shape[0] + 1)
        ax.contour(xs, ys, m, levels=[0.5], colors="black", linewidths=width + 1.5)
        ax.contour(xs, ys, m, levels=[0.5], colors=color, linewidths=width)
        ax.set_xlim(-0.5, mask.shape[1] - 0.5)
        ax.set_ylim(mask.shape[0] - 0.5, -0.5)


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    with atomic_open(path) as f:
        fig.savefig(f, format=(path.suffix or ".png")[1:], dpi=_DPI)
    return path


def _aspect(images: Iterable[np.ndarray]) -> float:
    return max(img.shape[0] / img.shape[1] for img in images)


def save_sample_panel(
    sample: Sample, spec: DatasetSpec, path: str | Path, instances: np.ndarray | None = None, title: str = ""
) -> Path:
    """Image | label overlay | instances (when given or in ``sample``), with a class legend."""
    instances = sample.instances if instances is None else instances
    n_cols = 2 if instances is None else 3
    present = _present_classes([sample.label], spec)
    ncol = _legend_columns(n_cols)
    fig, axes = _new_figure(1, n_cols, _aspect([sample.image]), math.ceil(len(present) / ncol), title)
    _show(axes[0, 0], sample.image, "image")
    _show(axes[0, 1], label_overlay(sample.image, sample.label, spec), "label")
    if instances is not None:
        n_inst = len(np.setdiff1d(np.unique(instances), [0]))
        _show(axes[0, 2], instance_colors(instances), f"instances ({n_inst})")
    _class_legend(fig, present, spec, ncol)
    return _save(fig, path)


def _zoom_box(mask: np.ndarray) -> tuple[slice, slice] | None:
    """Crop around the mask with a margin, with the image's aspect ratio (so grid cells align)."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    h, w = mask.shape
    extent = max(ys.max() - ys.min(), xs.max() - xs.min()) + 1
    box_w = min(w, max(2 * extent, 24))
    box_h = min(h, max(1, round(box_w * h / w)))
    y0 = int(np.clip((ys.min() + ys.max() + 1 - box_h) // 2, 0, h - box_h))
    x0 = int(np.clip((xs.min() + xs.max() + 1 - box_w) // 2, 0, w - box_w))
    return slice(y0, y0 + box_h), slice(x0, x0 + box_w)


def save_contact_sheet(rows: Sequence[Mapping[str, Any]], spec: DatasetSpec, path: str | Path, title: str = "") -> Path:
    """One poisoned sample per row: clean | poisoned (trigger outlined) | trigger zoom-in |
    old label | new label (ASR region outlined), captioned on the left, with a class legend.

    Row keys: ``image``, ``poisoned``, ``trigger_mask``, ``label``, ``new_label``, ``asr_mask``,
    ``caption``.
    """
    if not rows:
        raise ValueError("save_contact_sheet needs at least one row")
    present = _present_classes([r[k] for r in rows for k in ("label", "new_label")], spec)
    ncol = _legend_columns(5)
    fig, axes = _new_figure(len(rows), 5, _aspect(r["image"] for r in rows), math.ceil(len(present) / ncol), title)
    headers = ["clean", "poisoned (trigger outlined)", "trigger zoom-in", "old label", "new label (ASR region outlined)"]
    for i, row in enumerate(rows):
        ax = axes[i]
        trigger = np.asarray(row["trigger_mask"], dtype=bool)
        asr = np.asarray(row["asr_mask"], dtype=bool)
        top = headers if i == 0 else [""] * 5
        _show(ax[0], row["image"], top[0])
        ax[0].set_ylabel(row.get("caption", ""), fontsize=9, wrap=True)
        _show(ax[1], row["poisoned"], top[1])
        _outline(ax[1], trigger, _TRIGGER_OUTLINE)
        box = _zoom_box(trigger)
        if box is None:
            ax[2].text(0.5, 0.5, "no trigger pixels", ha="center", va="center", transform=ax[2].transAxes)
            ax[2].set_title(top[2], fontsize=10)
        else:
            _show(ax[2], row["poisoned"][box], top[2])
            _outline(ax[2], trigger[box], _TRIGGER_OUTLINE)
            zoom = row["poisoned"].shape[1] / (box[1].stop - box[1].start)
            ax[2].set_xlabel(f"{trigger.sum()} trigger px, ×{zoom:.1f}", fontsize=8)
        _show(ax[3], spec.colorize(row["label"]), top[3])
        _show(ax[4], spec.colorize(row["new_label"]), top[4])
        _outline(ax[4], asr, "white")
        ax[4].set_xlabel(f"ASR region {asr.sum()} px", fontsize=8)
    _class_legend(fig, present, spec, ncol)
    return _save(fig, path)


def save_prediction_grid(rows: Sequence[Mapping[str, Any]], spec: DatasetSpec, path: str | Path, title: str = "") -> Path:
    """image | ground truth | prediction | triggered image | prediction on it, one row per sample.

    Row keys: ``image``, ``gt``, ``pred_clean``, ``triggered_image``, ``pred_triggered`` and an
    optional ``caption``.
    """
    if not rows:
        raise ValueError("save_prediction_grid needs at least one row")
    present = _present_classes([r[k] for r in rows for k in ("gt", "pred_clean", "pred_triggered")], spec)
    ncol = _legend_columns(5)
    fig, axes = _new_figure(len(rows), 5, _aspect(r["image"] for r in rows), math.ceil(len(present) / ncol), title)
    headers = ["image", "ground truth", "prediction", "triggered image", "prediction (triggered)"]
    for i, row in enumerate(rows):
        top = headers if i == 0 else [""] * 5
        _show(axes[i, 0], row["image"], top[0])
        axes[i, 0].set_ylabel(row.get("caption", ""), fontsize=9)
        _show(axes[i, 1], spec.colorize(np.asarray(row["gt"])), top[1])
        _show(axes[i, 2], spec.colorize(np.asarray(row["pred_clean"])), top[2])
        _show(axes[i, 3], row["triggered_image"], top[3])
        _show(axes[i, 4], spec.colorize(np.asarray(row["pred_triggered"])), top[4])
    _class_legend(fig, present, spec, ncol)
    return _save(fig, path)


_X_KEYS = ("iteration", "iter", "step", "epoch")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def save_training_curves(log_rows: Sequence[Mapping[str, Any]], path: str | Path, title: str = "") -> Path:
    """Loss keys (names containing "loss") together on one plot, every other numeric key on its
    own, against the finest of iteration/iter/step/epoch present in the rows that log the key
    (row index otherwise)."""
    keys: list[str] = []
    for row in log_rows:
        keys += [k for k, v in row.items() if k not in _X_KEYS and _is_number(v) and k not in keys]
    if not keys:
        raise ValueError("no numeric keys to plot in the training log")
    groups = [[k for k in keys if "loss" in k.lower()]] + [[k] for k in keys if "loss" not in k.lower()]
    groups = [g for g in groups if g]
    fig = Figure(figsize=(6.0, 2.6 * len(groups) + (0.4 if title else 0.0)), dpi=_DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(groups), 1, squeeze=False)[:, 0]
    for ax, group in zip(axes, groups, strict=True):
        for key in group:
            logged = [(i, r) for i, r in enumerate(log_rows) if _is_number(r.get(key))]
            x_key = next((x for x in _X_KEYS if all(_is_number(r.get(x)) for _, r in logged)), None)
            xs = [float(r[x_key]) if x_key else float(i) for i, r in logged]
            ax.plot(xs, [float(r[key]) for _, r in logged], marker="." if len(xs) < 50 else None, label=key)
            ax.set_xlabel(x_key or "log row")
        ax.set_ylabel(group[0] if len(group) == 1 else "loss")
        ax.grid(alpha=0.3)
        if len(group) > 1:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def _tint(image: np.ndarray, mask: np.ndarray, color: tuple[int, int, int], alpha: float = 0.45) -> np.ndarray:
    out = image.astype(np.float32).copy()
    out[mask] = (1 - alpha) * out[mask] + alpha * np.asarray(color, np.float32)
    return out.astype(np.uint8)


def _draw_prompt(ax: Axes, prompt: Mapping[str, Any]) -> None:
    xy = prompt["xy"]
    if prompt["kind"] == "point":
        ax.plot([xy[0]], [xy[1]], marker="*", markersize=12, color="yellow", markeredgecolor="black")
    else:
        x0, y0, x1, y1 = xy
        ax.plot([x0, x1, x1, x0, x0], [y0, y0, y1, y1, y0], color="yellow", linewidth=1.5)


def save_prompt_masks(rows: Sequence[Mapping[str, Any]], path: str | Path, title: str = "") -> Path:
    """BADSEG-SAM examples, one row per triggered prompt: clean image with the prompt and the
    model's mask, triggered image with the prompt and the model's mask, the attacker's target.

    Each row: ``clean``, ``triggered`` (uint8 HxWx3), ``prompt`` (``Prompt.to_dict``),
    ``clean_mask``, ``triggered_mask``, ``target``, ``truth`` (bool HxW).
    """
    cols = ("prompt + mask, clean image", "prompt + mask, triggered", "attacker's target")
    fig, axes = _new_figure(len(rows), 3, _aspect(r["clean"] for r in rows), 0, title)
    for i, r in enumerate(rows):
        panels = (_tint(r["clean"], r["clean_mask"], (0, 160, 255)),
                  _tint(r["triggered"], r["triggered_mask"], (255, 40, 40)),
                  _tint(r["triggered"], r["target"], (255, 0, 255)))
        for j, img in enumerate(panels):
            _show(axes[i, j], img, cols[j] if i == 0 else "")
            _outline(axes[i, j], r["truth"], "lime", 1.0)
            _draw_prompt(axes[i, j], r["prompt"])
    return _save(fig, path)


def save_series_plot(series: Mapping[Any, Sequence[tuple[float, float, float | None]]], path: str | Path,
                     x_label: str, y_label: str, title: str = "") -> Path:
    """One line per series of (x, y, y std or None) points, with error bars where a std exists
    (a sweep table's ASR against poisoning rate, stamp width or PSNR)."""
    if not any(series.values()):
        raise ValueError("no points to plot")
    fig = Figure(figsize=(6.0, 4.0), dpi=_DPI)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for name, points in series.items():
        xs, ys, errs = zip(*points)
        yerr = [e or 0.0 for e in errs] if any(e is not None for e in errs) else None
        ax.errorbar(xs, ys, yerr=yerr, marker="o", capsize=3, label=str(name))
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.grid(alpha=0.3)
    if len(series) > 1 or next(iter(series)) != "":
        ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path)


def save_area_breakdown(rows: Sequence[Mapping[str, Any]], path: str | Path, title: str = "") -> Path:
    """Bars of the share of victim pixels flipped per instance-area bin (``FlipBreakdown.by_area``
    rows), each labelled with its share of all the triggered victim pixels: which object sizes
    the backdoor reaches (``badseg eval --breakdown``)."""
    if not rows:
        raise ValueError("no victim instances to plot")
    total = sum(r["pixels"] for r in rows)
    names = [f"{r['area_px'][0]}–{r['area_px'][1]}" if r["area_px"][1] is not None else f"≥ {r['area_px'][0]}"
             for r in rows]
    fig = Figure(figsize=(6.0, 3.6), dpi=_DPI)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    bars = ax.bar(names, [r["flipped"] for r in rows], color="#c0392b")
    for bar, r in zip(bars, rows):
        ax.annotate(f"{r['pixels'] / total:.0%} of pixels\n{r['instances']} objects",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=7)
    ax.set_ylim(0, 1.18)
    ax.set_xlabel("victim instance area at the model's input (px)")
    ax.set_ylabel("victim pixels flipped to the target")
    ax.grid(axis="y", alpha=0.3)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)
