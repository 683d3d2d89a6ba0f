"""Detection metrics for input-level backdoor detectors (STRIP, TeCo, Beatrix): ACC, Recall, F1, AUC.

Thresholds come from clean scores only: a target false-positive rate (DESIGN §4), or μ + kσ of
the clean scores (BADSEG Table 16, k = 1, 2, 3). AUC is scikit-learn's ROC AUC of the continuous
scores (ties count one half). A detector is never told the true poisoning rate.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import roc_auc_score


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
    truth = np.r_[np.zeros(c.size), np.ones(p.size)]
    return float(roc_auc_score(truth, sign * np.concatenate([c, p])))


def threshold_sigma(clean_scores: np.ndarray | list[float], k: float, higher_is_poisoned: bool = True) -> float:
    """μ + kσ of the clean scores (μ − kσ when lower scores are the suspicious ones); σ is the
    population standard deviation."""
    s = _scores(clean_scores, "clean_scores")
    return float(s.mean() + (k if higher_is_poisoned else -k) * s.std())


def metrics_at_threshold(
    clean_scores: np.ndarray | list[float],
    poisoned_scores: np.ndarray | list[float],
    threshold: float,
    higher_is_poisoned: bool = True,
) -> dict[str, float]:
    """ACC, Recall, Precision, F1 and the clean false-positive rate when inputs strictly beyond
    ``threshold`` are flagged (poisoned inputs are the positives)."""
    c = _scores(clean_scores, "clean_scores")
    p = _scores(poisoned_scores, "poisoned_scores")
    flag_c, flag_p = (c > threshold, p > threshold) if higher_is_poisoned else (c < threshold, p < threshold)
    tp = int(flag_p.sum())
    fp = int(flag_c.sum())
    tn = c.size - fp
    recall = tp / p.size
    precision = tp / (tp + fp) if tp + fp else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"acc": (tp + tn) / (c.size + p.size), "recall": recall, "precision": precision, "f1": f1,
            "threshold": float(threshold), "fpr": fp / c.size}


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
    thr = threshold_at_fpr(clean_scores, fpr, higher_is_poisoned)
    out = metrics_at_threshold(clean_scores, poisoned_scores, thr, higher_is_poisoned)
    del out["precision"]
    return {**out, "auc": auc_score(clean_scores, poisoned_scores, higher_is_poisoned)}


def detection_report(
    clean_scores: np.ndarray | list[float],
    poisoned_scores: np.ndarray | list[float],
    fpr: float = 0.05,
    sigmas: tuple[float, ...] = (1.0, 2.0, 3.0),
) -> dict[str, object]:
    """Everything a detector reports (higher score = more suspicious): ``auc``, the counts,
    ``at_fpr`` (metrics at the clean-score threshold for ``fpr``) and ``sigma`` (``"1"``, ``"2"``,
    ``"3"`` → metrics at μ + kσ of the clean scores)."""
    c = _scores(clean_scores, "clean_scores")
    p = _scores(poisoned_scores, "poisoned_scores")
    return {
        "auc": auc_score(c, p),
        "n_clean": int(c.size),
        "n_poisoned": int(p.size),
        "target_fpr": fpr,
        "at_fpr": metrics_at_threshold(c, p, threshold_at_fpr(c, fpr)),
        "sigma": {f"{k:g}": metrics_at_threshold(c, p, threshold_sigma(c, k)) for k in sigmas},
    }
