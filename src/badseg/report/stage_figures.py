"""Figures of the BADSEG stages: option probabilities during the trigger search (stage 2) and
the normalised class-distance heatmap (stage 3, the paper's Fig. 3)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from badseg.data.types import DatasetSpec
from badseg.report.figures import _DPI, _save


def save_probability_history(history: Sequence[Mapping[str, Any]], options: Mapping[str, Sequence[str]],
                             path: str | Path, title: str = "") -> Path:
    """One panel per searched attribute (more than one option): ``softmax(logits)`` of each
    option against the step; then the loss terms with the temperature, and the PSNR of the
    triggered images when logged."""
    attrs = [a for a, opts in options.items() if len(opts) > 1]
    steps = [int(h["step"]) for h in history]
    with_psnr = "psnr" in history[0]
    n = len(attrs) + 1 + with_psnr
    fig = Figure(figsize=(6.4, 2.2 * n + (0.4 if title else 0.0)), dpi=_DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(n, 1, squeeze=False, sharex=True)[:, 0]
    for ax, a in zip(axes, attrs):
        probs = np.array([h["probs"][a] for h in history])
        for k, name in enumerate(options[a]):
            ax.plot(steps, probs[:, k], label=name, linewidth=1.4)
        ax.set_ylabel(f"P({a})")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=min(len(options[a]), 7), loc="upper left", frameon=False)
    ax = axes[len(attrs)]
    for key in ("loss", "attack"):
        if key in history[0]:
            ax.plot(steps, [h[key] for h in history], label=key, linewidth=1.0)
    ax.set_ylabel("objective")
    ax.grid(alpha=0.3)
    twin = ax.twinx()
    twin.plot(steps, [h["tau"] for h in history], color="grey", linestyle="--", label="τ")
    twin.set_ylabel("τ")
    lines = ax.get_lines() + twin.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], fontsize=7, ncol=4, loc="upper right", frameon=False)
    if with_psnr:
        axes[-1].plot(steps, [h["psnr"] for h in history], linewidth=1.0)
        axes[-1].set_ylabel("PSNR (dB)")
        axes[-1].grid(alpha=0.3)
    axes[-1].set_xlabel("step")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def save_distance_heatmap(dist: np.ndarray, spec: DatasetSpec, path: str | Path, title: str = "") -> Path:
    """Heatmap of the normalised class-distance matrix (C, C); absent classes are left out,
    object classes are marked with ``*``, every cell is annotated."""
    keep = np.flatnonzero(np.isfinite(dist).any(axis=1) & np.isfinite(np.diag(dist)))
    sub = dist[np.ix_(keep, keep)]
    names = [spec.classes[i] + (" *" if spec.is_object(i) else "") for i in keep]
    side = max(4.0, 0.55 * len(keep) + 2.0)
    fig = Figure(figsize=(side + 1.0, side), dpi=_DPI)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    im = ax.imshow(sub, cmap="viridis_r", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(keep)), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(keep)), names, fontsize=8)
    size = 7 if len(keep) <= 12 else 5
    for i in range(len(keep)):
        for j in range(len(keep)):
            ax.text(j, i, f"{sub[i, j]:.2f}", ha="center", va="center", fontsize=size,
                    color="white" if sub[i, j] > 0.6 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="normalised distance")
    ax.set_title(title or "class-centre distances (* = object class)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
