"""Poisoned datasets: on the fly (training), the poisoned test set, and export to disk."""

from badseg.poisoning.dataset import (
    PoisonCount,
    PoisonedDataset,
    PoisonedTestSet,
    ScanResult,
    poison_count,
    sample_rng,
    scan,
)
from badseg.poisoning.export import export_poisoned

__all__ = ["PoisonCount", "PoisonedDataset", "PoisonedTestSet", "ScanResult", "export_poisoned", "poison_count",
           "sample_rng", "scan"]
