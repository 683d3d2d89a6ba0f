"""Poisoned training and test sets, deterministic per index (DESIGN §3, §5).

Every sample ``i`` draws from its own generator ``SeedSequence([seed, i])``, so the
poisoned set is byte-identical whatever the worker count or order. The poisoning rate is
a fraction of the samples where the attack applies: a scan of the labels (and of the images
for attacks whose selector tests a colour, CON; otherwise only the image headers, so a damaged
image or a size mismatch stops the run here, before training) finds them, then
``round(rate * n_applicable)`` of them are chosen with ``SeedSequence(seed, spawn_key=(1,))``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from badseg.attacks.base import Attack, Poisoned, Skipped
from badseg.data.base import SegDataset
from badseg.data.types import Sample


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of sample ``index``: ``default_rng(SeedSequence([seed, index]))``."""
    return np.random.default_rng(np.random.SeedSequence([seed, index]))


@dataclass
class ScanResult:
    """Where an attack applies: ``reasons[i]`` is None (applies) or the skip reason."""

    reasons: list[str | None]
    applicable: list[int] = field(init=False)

    def __post_init__(self) -> None:
        self.applicable = [i for i, r in enumerate(self.reasons) if r is None]

    def skip_counts(self) -> dict[str, int]:
        return dict(Counter(r for r in self.reasons if r is not None).most_common())


def _scan_chunk(args: tuple[SegDataset, Attack, int, list[int], bool]) -> list[str | None]:
    dataset, attack, seed, indices, test = args
    out = []
    for i in indices:
        if attack.needs_image:
            s = dataset[i]
            label, instances, image = s.label, s.instances, s.image
        else:
            (label, instances), image = dataset.load_labels(i), None
            dataset.check_image(i, label.shape)
        out.append(attack.applies(label, instances, sample_rng(seed, i), test, image))
    return out


def chunks(n: int, workers: int) -> list[list[int]]:
    """Split range(n) into contiguous chunks, a few per worker."""
    k = max(1, min(n, workers * 4))
    return [c.tolist() for c in np.array_split(np.arange(n), k) if c.size]


def scan(dataset: SegDataset, attack: Attack, seed: int, workers: int = 1, test: bool = False) -> ScanResult:
    """Pass over ``dataset``'s labels (images too when ``attack.needs_image``): which samples
    can be poisoned, and why not."""
    jobs = [(dataset, attack, seed, c, test) for c in chunks(len(dataset), workers)]
    if workers <= 1:
        parts: Iterable[list[str | None]] = map(_scan_chunk, jobs)
    else:
        with ProcessPoolExecutor(workers) as pool:
            parts = list(pool.map(_scan_chunk, jobs))
    return ScanResult([r for part in parts for r in part])


def choose_poisoned(applicable: list[int], rate: float, seed: int) -> list[int]:
    """``round(rate * len(applicable))`` indices chosen without replacement, sorted."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"poisoning rate must be in [0, 1], got {rate}")
    n = int(round(rate * len(applicable)))
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))
    return sorted(np.asarray(applicable)[rng.choice(len(applicable), size=n, replace=False)].tolist())


def nothing_poisoned(rate: float, found: ScanResult, n_samples: int, where: str = "the dataset",
                     advice: str = "check the victim class and the trigger size") -> str:
    """The message for a poisoning rate > 0 that poisons no sample: how many applied, and why the rest did not."""
    why = ", ".join(f"{n} × {r}" for r, n in found.skip_counts().items()) or "none skipped"
    if not found.applicable:
        return f"the attack applies to none of the {n_samples} samples of {where} (skipped: {why}); {advice}"
    return (f"rate {rate} of the {len(found.applicable)} samples of {where} where the attack applies rounds to "
            f"0 poisoned samples; raise the rate or use more samples")


class PoisonedDataset(SegDataset):
    """``base`` with a fraction ``rate`` of the applicable samples poisoned, on the fly.

    ``__getitem__`` returns a ``Sample`` (poisoned image and label where chosen), so it
    drops into any training code; ``poisoned(i)`` gives the full ``Poisoned`` record.
    """

    def __init__(self, base: SegDataset, attack: Attack, rate: float, seed: int = 0,
                 scan_result: ScanResult | None = None, workers: int = 1) -> None:
        self.base, self.attack, self.rate, self.seed = base, attack, rate, seed
        self.spec = base.spec
        self.scan = scan_result or scan(base, attack, seed, workers)
        self.poisoned_indices = choose_poisoned(self.scan.applicable, rate, seed)
        self._poisoned = set(self.poisoned_indices)

    def __len__(self) -> int:
        return len(self.base)

    def is_poisoned(self, index: int) -> bool:
        return index in self._poisoned

    def poisoned(self, index: int) -> Poisoned | Skipped:
        return self.attack.poison(self.base[index], sample_rng(self.seed, index))

    def load(self, index: int) -> Sample:
        sample = self.base[index]
        if index not in self._poisoned:
            return sample
        result = self.attack.poison(sample, sample_rng(self.seed, index))
        if isinstance(result, Skipped):  # scan and poison agree by construction; never expected
            raise RuntimeError(f"sample {sample.id}: applicable in the scan but skipped: {result.reason}")
        meta = {**sample.meta, "poisoned": True}
        return Sample(result.image, result.label, sample.instances, meta)


class PoisonedTestSet:
    """Every test image where the attack applies, triggered as in training (DESIGN §5).

    Items are ``(clean Sample, Poisoned)``; ``skipped`` counts the inapplicable images by
    reason.
    """

    def __init__(self, base: SegDataset, attack: Attack, seed: int = 0, workers: int = 1) -> None:
        self.base, self.attack, self.seed = base, attack, seed
        self.spec = base.spec
        self.scan = scan(base, attack, seed, workers, test=True)
        self.indices = self.scan.applicable

    @property
    def skipped(self) -> dict[str, int]:
        return self.scan.skip_counts()

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> tuple[Sample, Poisoned]:
        i = self.indices[k]
        sample = self.base[i]
        result = self.attack.poison(sample, sample_rng(self.seed, i), test=True)
        if isinstance(result, Skipped):
            raise RuntimeError(f"test sample {sample.id}: applicable in the scan but skipped: {result.reason}")
        return sample, result
