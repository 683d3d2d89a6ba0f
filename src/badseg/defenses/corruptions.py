"""The 15 common corruptions × severities 1–5 (Hendrycks & Dietterich, ``imagecorruptions-imaug``)
for TeCo, computed in worker processes.

Every (corruption, severity) variant is computed from the *original* image. The TeCo reference
code (and its copy in BackdoorBench) overwrites its image list in place, so each severity and
each corruption there is applied on top of all the previous ones; ``corrupted_variants`` does not.

The corruption package draws from NumPy's global generator (glass blur and impulse noise take a
seed instead): each variant runs under ``numpy.random`` state seeded from ``SeedSequence([seed,
corruption, severity])`` and restored afterwards (and passes that seed to the two that take one), so a variant is reproducible and the same whichever worker
computes it. Glass blur is a numba-compiled loop: its first call in a process compiles it
(seconds, ``benchmarks/defense_speed.py``), so it is compiled once in the main process before the
workers are forked (they inherit it; with ``spawn`` each worker compiles it once at start-up).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np

#: The 15 corruptions of TeCo and BADSEG Appendix E, in the package's order.
CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
_TAKE_SEED = ("glass_blur", "impulse_noise")  # the package's corruptions with a seed argument


@contextmanager
def _numpy_seed(seed: int) -> Iterator[None]:
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _variant_seed(seed: int, corruption: str, severity: int) -> int:
    return int(np.random.SeedSequence([seed, CORRUPTIONS.index(corruption), severity]).generate_state(1)[0])


def corrupt_once(image: np.ndarray, corruption: str, severity: int, seed: int = 0) -> np.ndarray:
    """One corruption at one severity of a uint8 (H, W, 3) image (H, W ≥ 32) → uint8 (H, W, 3)."""
    from imagecorruptions import corrupt

    if corruption not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {corruption!r}; valid: {', '.join(CORRUPTIONS)}")
    s = _variant_seed(seed, corruption, severity)
    kw = {"seed": s} if corruption in _TAKE_SEED else {}
    with _numpy_seed(s), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = corrupt(np.ascontiguousarray(image), corruption_name=corruption, severity=severity, **kw)
    return np.clip(np.asarray(out), 0, 255).astype(np.uint8)


def corrupted_variants(image: np.ndarray, corruptions: Sequence[str] = CORRUPTIONS,
                       severities: Sequence[int] = SEVERITIES, seed: int = 0) -> np.ndarray:
    """uint8 (K·S, H, W, 3): corruption ``k`` at severity ``severities[s]`` at row ``k·S + s``,
    each applied once to the original ``image``."""
    return np.stack([corrupt_once(image, c, s, seed) for c in corruptions for s in severities])


_warm = False


def warm_up() -> None:
    """Compile glass blur's numba loop in this process (once)."""
    global _warm
    if not _warm:
        corrupt_once(np.zeros((32, 32, 3), np.uint8), "glass_blur", 1)
        _warm = True


def _job(args: tuple[np.ndarray, tuple[str, ...], tuple[int, ...], int]) -> np.ndarray:
    return corrupted_variants(*args)


def default_workers() -> int:
    """One process per core but one (the model runs in the main process)."""
    return max(1, (os.cpu_count() or 2) - 1)


def variant_stream(images: Iterable[np.ndarray], corruptions: Sequence[str] = CORRUPTIONS,
                   severities: Sequence[int] = SEVERITIES, seeds: Iterable[int] | None = None,
                   workers: int | None = None) -> Iterator[np.ndarray]:
    """``corrupted_variants`` of each image, in order, computed ahead in ``workers`` processes
    (0: in this process) so that the caller's forward passes overlap them."""
    images = list(images)
    seeds = list(seeds) if seeds is not None else [0] * len(images)
    jobs = [(img, tuple(corruptions), tuple(severities), s) for img, s in zip(images, seeds)]
    workers = default_workers() if workers is None else workers
    if workers == 0:
        yield from map(_job, jobs)
        return
    fork = "fork" in mp.get_all_start_methods()
    glass = "glass_blur" in corruptions
    if glass and fork:
        warm_up()  # compiled once here; forked workers inherit the compiled loop
    ctx = mp.get_context("fork" if fork else "spawn")
    with ctx.Pool(workers, initializer=warm_up if glass and not fork else None) as pool:
        yield from pool.imap(_job, jobs)
