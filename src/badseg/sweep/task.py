"""What one sweep task does where it runs: train and evaluate a run (``badseg run``), or run a
defense on a finished run. Messages go to ``RUN_DIR/log.txt``; the result is the run's metrics.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from badseg.data.io import write_json
from badseg.sweep.spec import RunSpec

LOG = "log.txt"
METRICS = "metrics.json"
CLEAN_MODELS = "clean_models"  # OUT/clean_models: the clean reference models the sweep's runs share


def _logger(run_dir: Path):
    run_dir.mkdir(parents=True, exist_ok=True)

    def log(*parts: object) -> None:
        with open(run_dir / LOG, "a") as f:
            f.write(" ".join(str(p) for p in parts) + "\n")

    return log


def run_task(run: RunSpec, run_dir: str, base_dir: str | None, cwd: str, threads: int) -> dict[str, Any]:
    """Run ``run`` into ``run_dir`` with relative paths (data roots) read from ``cwd``; a defense
    run reads the finished run in ``base_dir``. Returns the metrics written to ``metrics.json``.
    ``run_dir`` is ``OUT/runs/<name>``; the clean reference models are shared in ``OUT/clean_models``."""
    import torch

    os.chdir(cwd)
    torch.set_num_threads(max(1, threads))
    out = Path(run_dir)
    log = _logger(out)
    if run.defense is None:
        from badseg.pipeline import run_experiment

        return run_experiment(run.cfg, out, progress=False, log=log, clean_cache=out.parent.parent / CLEAN_MODELS)
    from badseg.defenses import run_defense

    log(f"defense {run.defense} on {base_dir} ({', '.join(run.defense_overrides) or 'defaults'})")
    result = run_defense(Path(base_dir), run.defense, list(run.defense_overrides), progress=False, log=log)
    metrics = {**result, "defense": run.defense, "defense_overrides": list(run.defense_overrides), "base_run": base_dir}
    write_json(out / METRICS, metrics)
    return metrics
