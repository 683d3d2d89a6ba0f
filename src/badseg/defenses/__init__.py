"""Defenses adapted to segmentation (BADSEG §7, Appendix E): mitigations (fine-tuning, pruning,
ABL) and detectors (STRIP, TeCo, Beatrix), registered in ``DEFENSES``; ``run_defense`` runs one
on a finished run folder.

Example:
    >>> from badseg.defenses import run_defense
    >>> result = run_defense("runs/o2b", "strip", ["n=50"])   # writes runs/o2b/defense_strip.json
"""

from badseg.defenses import abl, beatrix, finetune, pruning, strip, teco  # noqa: F401  (register the defenses)
from badseg.defenses.base import DEFENSES, DefenseContext
from badseg.defenses.runner import load_context, run_defense

__all__ = ["DEFENSES", "DefenseContext", "load_context", "run_defense"]
