"""Poisoned datasets: on the fly (training), the poisoned test set, and export to disk."""

from badseg.poisoning.dataset import PoisonedDataset, PoisonedTestSet, ScanResult, sample_rng, scan
from badseg.poisoning.export import export_poisoned

__all__ = ["PoisonedDataset", "PoisonedTestSet", "ScanResult", "export_poisoned", "sample_rng", "scan"]
