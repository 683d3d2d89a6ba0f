"""Figures of the defense benchmark: kernel density estimates of clean vs poisoned scores
(STRIP, TeCo, Beatrix; BADSEG Fig. 5 d–i, 7, 8) and of ABL's per-image losses (Fig. 5 a–c)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy.stats import gaussian_kde

from badseg.report.figures import _DPI, _save

_COLORS = ("#1f77b4", "#d62728")


def _density(values: np.ndarray, grid: np.ndarray) -> np.ndarray | None:
    """Gaussian KDE of ``values`` on ``grid`` (Scott's bandwidth); None when it cannot be formed
    (fewer than two distinct values)."""
    if np.unique(values).size < 2:
        return None
    return gaussian_kde(values)(grid)


def save_score_kde(clean: Sequence[float], poisoned: Sequence[float], path: str | Path, title: str = "",
                   xlabel: str = "score", labels: tuple[str, str] = ("clean", "poisoned"),
                   log_x: bool = False) -> Path:
    """KDE curves (with a rug of the raw values) of clean and poisoned scores on one axis;
    ``log_x`` plots log10(1 + score) for heavy-tailed non-negative scores."""
    sets = [np.asarray(clean, float), np.asarray(poisoned, float)]
    if log_x:
        sets = [np.log10(1 + np.clip(s, 0, None)) for s in sets]
        xlabel = f"log10(1 + {xlabel})"
    lo, hi = min(s.min() for s in sets), max(s.max() for s in sets)
    pad = 0.1 * (hi - lo) or 0.5
    grid = np.linspace(lo - pad, hi + pad, 400)
    fig = Figure(figsize=(6.0, 3.2), dpi=_DPI)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for values, label, color in zip(sets, labels, _COLORS):
        d = _density(values, grid)
        name = f"{label} (n={values.size})"
        if d is None:
            ax.axvline(values[0], color=color, label=f"{name}, all equal")
        else:
            ax.plot(grid, d, color=color, label=name)
            ax.fill_between(grid, d, color=color, alpha=0.15)
        ax.plot(values, np.zeros_like(values), "|", color=color, markersize=10, alpha=0.6)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
