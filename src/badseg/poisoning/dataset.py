"""Poisoned training and test sets, deterministic per index (DESIGN §3, §5).

Every sample ``i`` draws from its own generator ``SeedSequence([seed, i])``, so the
poisoned set is byte-identical whatever the worker count or order. A scan of the labels (and
of the images for attacks whose selector tests a colour, CON; otherwise only the image headers,
so a damaged image or a size mismatch stops the run here, before training) finds the samples
where the attack applies; the poisoning rate is, as in the BADSEG paper, a fraction of the whole
set (``rate_of="dataset"``: ``round(rate * n_samples)`` poisoned, capped at the applicable ones)
or of the applicable samples (``rate_of="applicable"``: ``round(rate * n_applicable)``). They
are chosen among the applicable samples (``select``): at random with ``SeedSequence(seed,
spawn_key=(1,))``, or — an attacker who picks which images to poison (cf. Xia et al., "Data-
Efficient Backdoor Attacks", IJCAI 2022) — those with the most victim-class pixels, the images
whose relabelling teaches the most.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from badseg.attacks.base import Attack, Poisoned, Skipped
from badseg.data.base import SegDataset
from badseg.data.types import Sample


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of sample ``index``: ``default_rng(SeedSequence([seed, index]))``."""
    return np.random.default_rng(np.random.SeedSequence([seed, index]))


@dataclass
class ScanResult:
    """Where an attack applies: ``reasons[i]`` is None (applies) or the skip reason;
    ``victim_pixels[i]`` the victim-class pixels of sample ``i``'s label."""

    reasons: list[str | None]
    victim_pixels: list[int]
    applicable: list[int] = field(init=False)

    def __post_init__(self) -> None:
        self.applicable = [i for i, r in enumerate(self.reasons) if r is None]

    def skip_counts(self) -> dict[str, int]:
        return dict(Counter(r for r in self.reasons if r is not None).most_common())


def _scan_chunk(args: tuple[SegDataset, Attack, int, list[int], bool]) -> list[tuple[str | None, int]]:
    dataset, attack, seed, indices, test = args
    out = []
    for i in indices:
        if attack.needs_image:
            s = dataset[i]
            label, instances, image = s.label, s.instances, s.image
        else:
            (label, instances), image = dataset.load_labels(i), None
            dataset.check_image(i, label.shape)
        reason = attack.applies(label, instances, sample_rng(seed, i), test, image)
        out.append((reason, int(np.count_nonzero(np.asarray(label) == attack.victim))))
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
        parts: Iterable[list[tuple[str | None, int]]] = map(_scan_chunk, jobs)
    else:
        with ProcessPoolExecutor(workers) as pool:
            parts = list(pool.map(_scan_chunk, jobs))
    rows = [row for part in parts for row in part]
    return ScanResult([r for r, _ in rows], [n for _, n in rows])


RateOf = Literal["dataset", "applicable"]
#: How the poisoned samples are chosen among the applicable ones (module docstring).
Select = Literal["random", "most_victim"]


@dataclass(frozen=True)
class PoisonCount:
    """How many samples a rate poisons: ``wanted`` by the rate, ``chosen`` after the cap at
    the ``applicable`` ones, out of ``n_samples``."""

    rate: float
    rate_of: RateOf
    n_samples: int
    applicable: int
    wanted: int
    chosen: int

    @property
    def capped(self) -> bool:
        return self.chosen < self.wanted

    def message(self) -> str:
        text = (f"poisoning {self.chosen} of {self.n_samples} images ({self.chosen / max(1, self.n_samples):.1%} of "
                f"the set, {self.chosen / max(1, self.applicable):.1%} of the {self.applicable} the attack applies to)")
        if self.capped:
            text += (f"; rate {self.rate} of the {self.rate_of} asks for {self.wanted}, but only {self.applicable} "
                     "images can be poisoned: capped")
        return text

    def to_dict(self) -> dict[str, object]:
        """The counts for metrics.json / manifest.json."""
        return {"rate": self.rate, "rate_of": self.rate_of, "n_samples": self.n_samples,
                "n_applicable": self.applicable, "n_wanted": self.wanted, "n_poisoned": self.chosen,
                "fraction_of_samples": self.chosen / max(1, self.n_samples),
                "fraction_of_applicable": self.chosen / max(1, self.applicable), "capped": self.capped}


def poison_count(rate: float, n_samples: int, applicable: int, rate_of: RateOf = "dataset") -> PoisonCount:
    """The number of samples to poison (module docstring)."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"poisoning rate must be in [0, 1], got {rate}")
    if rate_of not in ("dataset", "applicable"):
        raise ValueError(f"rate_of must be 'dataset' or 'applicable', got {rate_of!r}")
    wanted = int(round(rate * (n_samples if rate_of == "dataset" else applicable)))
    return PoisonCount(rate, rate_of, n_samples, applicable, wanted, min(wanted, applicable))


def choose_poisoned(found: ScanResult, n: int, seed: int, select: Select = "random") -> list[int]:
    """``n`` of ``found``'s applicable indices, sorted: drawn without replacement (``random``) or
    the ``n`` with the most victim pixels, ties to the lower index (``most_victim``)."""
    applicable = found.applicable
    if select == "most_victim":
        return sorted(sorted(applicable, key=lambda i: (-found.victim_pixels[i], i))[:n])
    if select != "random":
        raise ValueError(f"select must be 'random' or 'most_victim', got {select!r}")
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
    """``base`` with a fraction ``rate`` of its samples (``rate_of="dataset"``) or of the
    applicable ones (``"applicable"``) poisoned, on the fly, chosen by ``select``
    (``choose_poisoned``); ``count`` says how many.

    ``__getitem__`` returns a ``Sample`` (poisoned image and label where chosen), so it
    drops into any training code; ``poisoned(i)`` gives the full ``Poisoned`` record.
    """

    def __init__(self, base: SegDataset, attack: Attack, rate: float, seed: int = 0,
                 scan_result: ScanResult | None = None, workers: int = 1, rate_of: RateOf = "dataset",
                 select: Select = "random") -> None:
        self.base, self.attack, self.rate, self.seed = base, attack, rate, seed
        self.spec = base.spec
        self.scan = scan_result or scan(base, attack, seed, workers)
        self.count = poison_count(rate, len(base), len(self.scan.applicable), rate_of)
        self.poisoned_indices = choose_poisoned(self.scan, self.count.chosen, seed, select)
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
