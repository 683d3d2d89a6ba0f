"""Run a sweep: skip the finished runs, submit the rest (a run once the runs it needs are
done), record each failure's traceback and retry it a bounded number of times, show a live
table, and stop cleanly on Ctrl-C so that the same command resumes.

Layout of a sweep folder::

    OUT/runs/<slug>-<hash>/           one run: run.json, config.yaml, metrics.json, log.txt, ...
    OUT/runs/<slug>-<hash>/failures/attempt-<n>.txt   the traceback of each failed attempt
    OUT/sweeps/<file name>            the sweep files run into OUT
    OUT/sweeps/<file stem>.runs.json  the hashes of the runs each sweep file asked for, over all its
                                      invocations (``--only`` parts add up): ``badseg table`` reads them
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from badseg.data.io import atomic_write_bytes, write_json
from badseg.sweep.executor import Executor
from badseg.sweep.spec import RunSpec, Sweep
from badseg.sweep.task import METRICS, run_task

RUNS = "runs"
RUN_INFO = "run.json"
SWEEPS = "sweeps"
MANIFEST_SUFFIX = ".runs.json"
FAILURES = "failures"
SHOWN_ROWS = 30
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # Ray colours its remote tracebacks


class SweepInterrupted(Exception):
    """Ctrl-C: in-flight runs were cancelled; finished runs are kept and re-running resumes."""


@dataclass
class RunState:
    run: RunSpec
    path: Path
    status: str = "pending"  # pending, submitted, done, skipped, retrying, failed, blocked
    attempts: int = 0
    metrics: dict[str, Any] | None = None
    started: float | None = None
    error: str | None = None


@dataclass
class SweepResult:
    states: list[RunState] = field(default_factory=list)

    def count(self, *status: str) -> int:
        return sum(s.status in status for s in self.states)

    @property
    def failed(self) -> list[RunState]:
        return [s for s in self.states if s.status in ("failed", "blocked")]


def find_run_dir(runs_dir: Path, run_hash: str) -> Path | None:
    """The folder of the run with this hash, whatever sweep named it."""
    found = sorted(p for p in runs_dir.glob(f"*{run_hash}") if p.name == run_hash or p.name.endswith(f"-{run_hash}"))
    return found[0] if found else None


def _write_info(state: RunState) -> None:
    """``run.json``: the run's identity and axis values (merged with those of earlier sweeps)."""
    r = state.run
    info_path = state.path / RUN_INFO
    axes = dict(r.axes)
    if info_path.is_file():
        axes = {**json.loads(info_path.read_text()).get("axes", {}), **axes}
    write_json(info_path, {"hash": r.hash, "slug": r.slug, "axes": axes, "defense": r.defense,
                           "defense_overrides": list(r.defense_overrides), "base_hash": r.base_hash})


def sweep_manifest(out: Path, stem: str) -> Path:
    """``OUT/sweeps/<stem>.runs.json``: the runs a sweep file has asked for in ``out``."""
    return out / SWEEPS / f"{stem}{MANIFEST_SUFFIX}"


def _record_sweep(out: Path, sweep: Sweep) -> None:
    """Copy the sweep file into ``OUT/sweeps/`` and add its runs' hashes to its manifest."""
    atomic_write_bytes(out / SWEEPS / sweep.source.name, sweep.source.read_bytes())
    manifest = sweep_manifest(out, sweep.source.stem)
    known = set(json.loads(manifest.read_text())["runs"]) if manifest.is_file() else set()
    write_json(manifest, {"sweep": sweep.source.name, "runs": sorted(known | {r.hash for r in sweep.runs})})


def _record_failure(state: RunState, text: str) -> None:
    text = ANSI.sub("", text)
    folder = state.path / FAILURES
    folder.mkdir(parents=True, exist_ok=True)
    n = len(list(folder.glob("attempt-*.txt"))) + 1
    atomic_write_bytes(folder / f"attempt-{n}.txt", text.encode())
    state.error = text.strip().splitlines()[-1] if text.strip() else "failed"


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, (int, float)) else "–"


def render(states: list[RunState], title: str) -> Group:
    """The live view: one line of counts, then the runs (unfinished first)."""
    order = {"submitted": 0, "retrying": 1, "pending": 2, "failed": 3, "blocked": 4, "done": 5, "skipped": 6}
    table = Table(title=title, title_justify="left")
    for col in ("run", "status", "attempt", "min", "ASR", "CBA"):
        table.add_column(col, justify="left" if col in ("run", "status") else "right")
    ranked = sorted(states, key=lambda s: order.get(s.status, 9))
    now = time.monotonic()
    for s in ranked[:SHOWN_ROWS]:
        m = s.metrics or {}
        minutes = m.get("minutes") if m else ((now - s.started) / 60 if s.started else None)
        status = s.status if not s.error or s.status == "done" else f"{s.status}: {s.error[:60]}"
        table.add_row(s.path.name, status, str(s.attempts or ""), _fmt(minutes), _fmt(m.get("asr")), _fmt(m.get("cba")))
    if len(ranked) > SHOWN_ROWS:
        table.add_row(f"… and {len(ranked) - SHOWN_ROWS} more", "", "", "", "", "")
    counts = {k: sum(s.status == k for s in states) for k in order}
    line = "  ".join(f"{k} {n}" for k, n in counts.items() if n)
    return Group(line, table)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _stop_on_sigterm() -> Any:
    """Treat SIGTERM (a cluster scheduler's stop) like Ctrl-C; returns the handler it replaced."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_interrupt)


def run_sweep(sweep: Sweep, out: str | Path, executor: Executor, console: Console | None = None,
              task: Callable[..., dict[str, Any]] = run_task, poll_s: float = 1.0,
              threads: int | None = None) -> SweepResult:
    """Run every unfinished run of ``sweep`` into ``out`` on ``executor``; see the module docstring.

    ``task(run, run_dir, base_dir, cwd, threads)`` does one run (``run_task``; tests pass a stub);
    ``threads`` (torch threads per run) defaults to the CPUs each run asks for.
    Raises ``SweepInterrupted`` on Ctrl-C (or SIGTERM) after cancelling what was in flight.
    """
    out = Path(out)
    runs_dir = out / RUNS
    runs_dir.mkdir(parents=True, exist_ok=True)
    _record_sweep(out, sweep)
    console = console or Console()
    states: dict[str, RunState] = {}
    for run in sweep.runs:
        path = find_run_dir(runs_dir, run.hash) or runs_dir / run.name
        state = RunState(run, path)
        path.mkdir(parents=True, exist_ok=True)
        _write_info(state)
        if (path / METRICS).is_file():
            state.status, state.metrics = "skipped", json.loads((path / METRICS).read_text())
        states[run.hash] = state
    result = SweepResult(list(states.values()))
    in_flight: dict[Any, RunState] = {}
    retries = sweep.spec.retries
    threads = threads or max(1, int(sweep.spec.resources.cpus))

    def submit_ready() -> None:
        for s in states.values():
            if s.status not in ("pending", "retrying"):
                continue
            needs = [states[h] for h in s.run.needs]
            if any(n.status in ("failed", "blocked") for n in needs):
                s.status, s.error = "blocked", "a run it needs failed"
            elif all(n.status in ("done", "skipped") for n in needs):
                base = str(needs[0].path.resolve()) if needs else None
                handle = executor.submit(task, (s.run, str(s.path.resolve()), base, os.getcwd(), threads),
                                         sweep.spec.resources)
                s.status, s.started = "submitted", time.monotonic()
                s.attempts += 1
                in_flight[handle] = s

    title = f"sweep {sweep.source.name} → {out}"
    previous = _stop_on_sigterm()
    try:
        with Live(render(result.states, title), console=console, refresh_per_second=2, transient=False) as live:
            while True:
                submit_ready()
                live.update(render(result.states, title))
                if not in_flight:
                    break
                for handle in executor.wait(list(in_flight), timeout=poll_s):
                    s = in_flight.pop(handle)
                    try:
                        s.metrics = executor.result(handle)
                        s.status, s.error = "done", None
                    except Exception as e:  # noqa: BLE001 - any failure of a run is recorded, then retried
                        _record_failure(s, "".join(traceback.format_exception(e)))
                        s.status = "retrying" if s.attempts <= retries else "failed"
                    if not console.is_terminal:  # a log file gets one line per finished attempt
                        console.print(f"{time.strftime('%H:%M:%S')} {s.status} {s.path.name}"
                                      + (f": {s.error}" if s.error else ""))
    except KeyboardInterrupt:
        for handle in in_flight:
            executor.cancel(handle)
        raise SweepInterrupted(
            f"interrupted: {result.count('done', 'skipped')} of {len(result.states)} runs finished, "
            f"{len(in_flight)} cancelled; run the same command again to resume") from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return result
