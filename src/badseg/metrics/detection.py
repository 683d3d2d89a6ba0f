"""Detection metrics for input-level backdoor detectors (STRIP, TeCo, Beatrix): ACC, Recall, F1, AUC.

The threshold is set on clean scores for a target false-positive rate (DESIGN §4); AUC is the
Mann–Whitney rank statistic with ties counted one half.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import rankdata


def _scores(x: np.ndarray | list[float], name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).ravel()
    if a.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinite scores")
    return a


def threshold_at_fpr(clean_scores: np.ndarray | list[float], fpr: float, higher_is_poisoned: bool = True) -> float:
    """Threshold flagging at most ``floor(fpr * n)`` clean inputs.

    An input is flagged as poisoned when its score is strictly above the threshold
    (``higher_is_poisoned``) or strictly below it (otherwise). The threshold is a clean score,
    so ties at it are never flagged and the realised clean false-positive rate is ≤ ``fpr``.
    """
    if not 0.0 <= fpr <= 1.0:
        raise ValueError(f"fpr must be in [0, 1], got {fpr}")
    s = _scores(clean_scores, "clean_scores")
    ordered = np.sort(s)[::-1] if higher_is_poisoned else np.sort(s)
    k = math.floor(fpr * s.size + 1e-9)  # number of clean inputs allowed beyond the threshold
    if k >= s.size:  # every clean input may be flagged: put the threshold past all of them
        return float(np.nextafter(ordered[-1], -np.inf if higher_is_poisoned else np.inf))
    return float(ordered[k])


def auc_score(clean_scores: np.ndarray | list[float], poisoned_scores: np.ndarray | list[float], higher_is_poisoned: bool = True) -> float:
    """Probability that a poisoned input scores as more suspicious than a clean one (ties ½)."""
    c = _scores(clean_scores, "clean_scores")
    p = _scores(poisoned_scores, "poisoned_scores")
    sign = 1.0 if higher_is_poisoned else -1.0
    ranks = rankdata(sign * np.concatenate([c, p]))  # average ranks for ties
    u = ranks[c.size :].sum() - p.size * (p.size + 1) / 2.0
    return float(u / (p.size * c.size))


def detection_metrics(
    clean_scores: np.ndarray | list[float],
    poisoned_scores: np.ndarray | list[float],
    fpr: float = 0.05,
    higher_is_poisoned: bool = True,
) -> dict[str, float]:
    """ACC, Recall and F1 at the threshold from :func:`threshold_at_fpr`, plus AUC.

    Poisoned inputs are the positives. Returns ``acc``, ``recall``, ``f1``, ``auc``,
    ``threshold`` and the realised clean false-positive rate ``fpr``.
    """
    c = _scores(clean_scores, "clean_scores")
    p = _scores(poisoned_scores, "poisoned_scores")
    thr = threshold_at_fpr(c, fpr, higher_is_poisoned)
    flag_c, flag_p = (c > thr, p > thr) if higher_is_poisoned else (c < thr, p < thr)
    tp = int(flag_p.sum())
    fp = int(flag_c.sum())
    tn = c.size - fp
    recall = tp / p.size
    precision = tp / (tp + fp) if tp + fp else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "acc": (tp + tn) / (c.size + p.size),
        "recall": recall,
        "f1": f1,
        "auc": auc_score(c, p, higher_is_poisoned),
        "threshold": thr,
        "fpr": fp / c.size,
    }
