"""Sweeps: many runs from one file, on Ray (``badseg sweep``), resumable; see ``spec`` for the file."""

from badseg.sweep.executor import Executor, ExecutorError, LocalExecutor, RayExecutor
from badseg.sweep.runner import SweepInterrupted, SweepResult, find_run_dir, run_sweep
from badseg.sweep.spec import RunSpec, Sweep, SweepFile, config_hash, expand, load_sweep, make_slug, select

__all__ = ["Executor", "ExecutorError", "LocalExecutor", "RayExecutor", "RunSpec", "Sweep", "SweepFile", "SweepInterrupted",
           "SweepResult", "config_hash", "expand", "find_run_dir", "load_sweep", "make_slug", "run_sweep",
           "select"]
