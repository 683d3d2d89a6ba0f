"""A sweep folder's metrics as the paper's tables: CSV and Markdown, mean ± std over seeds.

Each finished run of ``SWEEP/runs/*`` gives one record: its axis values (``run.json``), its
resolved config (``config.yaml``, dotted keys) and its ``metrics.json``. A layout names the
keys that make the rows and the columns and the metrics in each cell; runs that agree on those
keys and differ only in ``seed`` are pooled into one cell (mean, sample standard deviation, n).
Runs that differ in any other key the layout does not show are an error that names the key,
never silently averaged.

Example:
    >>> t = build_table(load_records(Path("runs/paper-camvid")), LAYOUTS["table23"])
    >>> print(t.markdown())
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from badseg.sweep.runner import MANIFEST_SUFFIX, RUN_INFO, RUNS, SWEEPS, find_run_dir, sweep_manifest

SEED = "seed"
TRIGGER = "trigger."
VECTOR = "vector"
METRIC_NAMES = {"asr": "ASR", "pba": "PBA", "cba": "CBA", "clean_model_cba": "clean CBA", "psnr": "PSNR",
                "ssim": "SSIM", "lpips": "LPIPS", "acc": "ACC", "recall": "Recall", "f1": "F1", "auc": "AUC"}


@dataclass(frozen=True)
class Plot:
    """A figure of a layout: ``y`` against ``x`` (a key, or a metric's cell mean), one line per ``series``."""

    x: str
    y: str
    series: str | None
    x_label: str
    y_label: str


@dataclass(frozen=True)
class Layout:
    name: str
    title: str
    rows: tuple[str, ...]
    cols: str | None = None
    metrics: tuple[str, ...] = ("asr", "pba", "cba")
    plot: Plot | None = None
    #: Column values left out: a detector table has no column for the undefended run (it has no score).
    drop_cols: tuple[Any, ...] = ()
    #: The stealth price's ASR bar: the markdown then names, per plot series, the highest x (PSNR)
    #: whose cell's mean ASR reaches it (``stealth_price``).
    price_asr: float | None = None


_ASR = ("asr",)
_DETECTION = ("acc", "recall", "f1", "auc")
LAYOUTS: dict[str, Layout] = {lay.name: lay for lay in (
    Layout("table5", "Table 5: attack vector × model", (VECTOR, "model.name")),
    Layout("table8-shape", "Table 8: trigger shape", (VECTOR,), "trigger.shape", _ASR),
    Layout("table8-size", "Table 8: trigger size", (VECTOR,), "trigger.size", _ASR,
           Plot("trigger.size", "asr", VECTOR, "stamp width (fraction of the object / image width)", "ASR")),
    Layout("table9", "Table 9: trigger position", (VECTOR,), "attack.options.placement", _ASR),
    Layout("table10-quantity", "Table 10: trigger quantity", (VECTOR,), "trigger.quantity", _ASR),
    Layout("table10-intensity", "Table 10: trigger intensity", (VECTOR,), "trigger.intensity",
           ("asr", "psnr"), Plot("psnr", "asr", VECTOR, "PSNR (dB)", "ASR")),
    Layout("table11", "Table 11: victim / target class", (VECTOR, "attack.victim", "attack.target")),
    Layout("table12-ins", "Table 12(a): instances triggered", (VECTOR,), "attack.options.k"),
    Layout("table12-con", "Table 12(b): conditional attack, poisoning rate", (VECTOR,), "attack.rate"),
    Layout("table14", "Table 14: fine-tuning and pruning", (VECTOR,), "defense", _ASR),
    Layout("table15", "Table 15: ABL (a) and STRIP (b)", (VECTOR,), "defense", ("asr", "pba", "cba", *_DETECTION)),
    Layout("table16", "Table 16: TeCo detection", (VECTOR,), "defense", _DETECTION, drop_cols=("none",)),
    Layout("table17", "Table 17: Beatrix detection", (VECTOR,), "defense", _DETECTION, drop_cols=("none",)),
    Layout("table18", "Table 18: transformers", ("model.name", VECTOR)),
    Layout("table23", "Table 23: poisoning rate", (VECTOR,), "attack.rate", _ASR,
           Plot("attack.rate", "asr", VECTOR, "poisoning rate", "ASR")),
    Layout("table24", "Table 24: prior attacks and BADSEG", (VECTOR,)),
    Layout("frontier", "The stealth frontier: ASR against PSNR", ("attack", "trigger.intensity"), None,
           ("asr", "psnr", "cba"), Plot("psnr", "asr", "attack", "PSNR (dB)", "ASR"), price_asr=0.9),
)}


class TableError(ValueError):
    """A sweep folder or layout that does not make a table."""


@dataclass(frozen=True)
class Record:
    run: str
    axes: dict[str, Any]
    config: dict[str, Any]  # dotted key → value
    metrics: dict[str, Any]

    def value(self, key: str) -> Any:
        """An axis label, else a config key (``defense``: the defense's name), else a metric.
        ``vector`` is the label of a ``vector`` or ``attack`` axis (``ins-o2o``), else ``attack.vector``.
        A ``trigger.*`` key of a ``trigger: auto`` run is the trigger stage 2 chose for it (metrics.json's
        ``attack.trigger``), so searched triggers take their place on the frontier."""
        if key == VECTOR:
            return next((self.axes[k] for k in (VECTOR, "attack") if k in self.axes), self.config.get("attack.vector"))
        if key in self.axes:
            return self.axes[key]
        if key in self.config:
            return self.config[key]
        if key.startswith(TRIGGER) and self.config.get("trigger") == "auto":
            return _hashable(self.metrics.get("attack", {}).get("trigger", {}).get(key.removeprefix(TRIGGER)))
        return self.metrics.get(key)


def select_records(records: list[Record], where: Sequence[str]) -> list[Record]:
    """The records whose ``Record.value(key)`` equals ``value`` for every ``key=value`` of ``where``
    (the value read as YAML, so ``attack.rate=0.1`` matches the number)."""
    wanted = []
    for term in where:
        key, sep, text = term.partition("=")
        if not sep or not key:
            raise TableError(f"--where takes key=value, got {term!r}")
        wanted.append((key.strip(), yaml.safe_load(text)))
    return [r for r in records if all(_hashable(r.value(k)) == _hashable(v) for k, v in wanted)]


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for k, v in tree.items():
        if isinstance(v, dict) and k != "matrix":
            flat.update(_flatten(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = tuple(v) if isinstance(v, list) else v
    return flat


def recorded_sweeps(sweep_dir: Path) -> list[str]:
    """The stems of the sweep files run into ``sweep_dir`` (those with a manifest), sorted."""
    return sorted(p.name.removesuffix(MANIFEST_SUFFIX) for p in (sweep_dir / SWEEPS).glob(f"*{MANIFEST_SUFFIX}"))


def sweeps_for(sweep_dir: Path, layout: str) -> list[str]:
    """The sweep files run into ``sweep_dir`` that make table ``layout``: those named like it
    (``table8-size`` → ``table8-size``, ``table8-size-b2b``), by their manifests."""
    return [s for s in recorded_sweeps(sweep_dir) if s == layout or s.startswith(f"{layout}-")]


def load_records(sweep_dir: Path, sweeps: Sequence[str] | None = None) -> list[Record]:
    """One record per finished run under ``sweep_dir/runs`` (unfinished runs are left out); with
    ``sweeps`` (sweep file stems), only the runs those sweep files asked for."""
    runs_dir = sweep_dir / RUNS
    if not runs_dir.is_dir():
        raise TableError(f"{sweep_dir} is not a sweep folder (no {RUNS}/ in it)")
    wanted: set[str] | None = None
    if sweeps is not None:
        wanted = set()
        for stem in sweeps:
            manifest = sweep_manifest(sweep_dir, stem)
            if not manifest.is_file():
                known = ", ".join(recorded_sweeps(sweep_dir)) or "none recorded"
                raise TableError(f"no sweep {stem!r} was run into {sweep_dir}; run: {known}")
            wanted |= set(json.loads(manifest.read_text())["runs"])
    records = []
    for path in sorted(p for p in runs_dir.iterdir() if (p / "metrics.json").is_file()):
        info = json.loads((path / RUN_INFO).read_text()) if (path / RUN_INFO).is_file() else {}
        if wanted is not None and info.get("hash") not in wanted:
            continue
        cfg_dir = path
        if info.get("base_hash"):
            cfg_dir = find_run_dir(runs_dir, info["base_hash"]) or path
        cfg_file = cfg_dir / "config.yaml"
        config = _flatten(yaml.safe_load(cfg_file.read_text()) or {}) if cfg_file.is_file() else {}
        config["defense"] = info.get("defense") or "none"
        axes = {k: v for k, v in info.get("axes", {}).items() if k != "defense" and not k.startswith("defense.")}
        metrics = json.loads((path / "metrics.json").read_text())
        for label, values in _defense_results(metrics):
            records.append(Record(path.name, axes, {**config, "defense": label or config["defense"]}, values))
    return records


#: The option a mitigation defense's rows vary (badseg.defenses: fine-tuning, pruning, ABL).
_ROW_OPTIONS = ("fraction", "isolation_fraction")


def _defense_results(metrics: dict[str, Any]) -> list[tuple[str | None, dict[str, Any]]]:
    """A run's metrics as (defense label, metrics) pairs: a mitigation defense gives one pair per
    row (``finetune 0.05``), a detector its metrics at the target false-positive rate plus AUC,
    a run without a defense itself."""
    kind, name = metrics.get("kind"), metrics.get("defense")
    if kind == "mitigation":
        pairs = []
        for row in metrics.get("rows", []):
            option = next((row[k] for k in _ROW_OPTIONS if k in row), None)
            pairs.append((name if option is None else f"{name} {option:g}", row))
        return pairs
    if kind == "detector":
        return [(name, {**metrics.get("at_fpr", {}), "auc": metrics.get("auc")})]
    return [(None, metrics)]


@dataclass
class Cell:
    values: dict[str, list[float]] = field(default_factory=dict)
    runs: list[str] = field(default_factory=list)

    def stats(self, metric: str) -> tuple[float | None, float | None, int]:
        """(mean, sample std or None for one value, n) of a metric over the cell's runs."""
        xs = [v for v in self.values.get(metric, []) if v is not None and not math.isnan(v)]
        if not xs:
            return None, None, 0
        mean = sum(xs) / len(xs)
        std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else None
        return mean, std, len(xs)


@dataclass
class SweepTable:
    layout: Layout
    row_keys: list[tuple[Any, ...]]
    col_keys: list[Any]
    cells: dict[tuple[tuple[Any, ...], Any], Cell]

    def _columns(self) -> list[tuple[Any, str]]:
        return [(c, m) for c in self.col_keys for m in self.layout.metrics]

    def _header(self, col: Any, metric: str) -> str:
        name = METRIC_NAMES.get(metric, metric)
        return name if self.layout.cols is None else f"{col} {name}" if len(self.layout.metrics) > 1 else str(col)

    def markdown(self) -> str:
        lay = self.layout
        lead = [k.rsplit(".", 1)[-1] for k in lay.rows]
        col_title = f" ({lay.cols.rsplit('.', 1)[-1]})" if lay.cols else ""
        lines = [f"**{lay.title}**{col_title}", "",
                 "| " + " | ".join(lead + [self._header(c, m) for c, m in self._columns()]) + " | n |",
                 "|" + "---|" * (len(lead) + len(self._columns()) + 1)]
        for row in self.row_keys:
            cells, ns = [], set()
            for c, m in self._columns():
                cell = self.cells.get((row, c))
                mean, std, n = cell.stats(m) if cell else (None, None, 0)
                ns.add(n)
                cells.append("–" if mean is None else f"{mean:.3f}" if std is None else f"{mean:.3f} ± {std:.3f}")
            n_text = "/".join(str(n) for n in sorted(ns - {0})) or "0"
            lines.append("| " + " | ".join([str(v) for v in row] + cells) + f" | {n_text} |")
        if lay.price_asr is not None and lay.plot is not None:
            price = stealth_price(plot_points(self), lay.price_asr)
            lines += ["", f"Stealth price (highest {lay.plot.x_label} at mean {lay.plot.y_label} ≥ {lay.price_asr:g}): "
                      + "; ".join(f"{k} {'–' if v is None else f'{v:.2f}'}" for k, v in price.items())]
        return "\n".join(lines) + "\n"

    def csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow([*self.layout.rows, self.layout.cols or "column", "metric", "mean", "std", "n", "runs"])
        for row in self.row_keys:
            for c, m in self._columns():
                cell = self.cells.get((row, c))
                if cell is None:
                    continue
                mean, std, n = cell.stats(m)
                w.writerow([*row, "" if c is None else c, m, "" if mean is None else f"{mean:.6g}",
                            "" if std is None else f"{std:.6g}", n, " ".join(cell.runs)])
        return buf.getvalue()


def _hashable(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def _sort_key(v: Any) -> tuple[int, Any]:
    return (0, v) if isinstance(v, (int, float)) else (1, str(v))


def build_table(records: list[Record], layout: Layout) -> SweepTable:
    """Group records by the layout's row and column keys and pool seeds; see the module docstring."""
    if not records:
        raise TableError("no finished runs to tabulate")
    shown = set(layout.rows) | ({layout.cols} if layout.cols else set())
    missing = [k for k in shown if all(r.value(k) is None for r in records)]
    if missing:
        raise TableError(f"layout {layout.name} needs {', '.join(missing)}, which no run has")
    groups: dict[tuple[tuple[Any, ...], Any], list[Record]] = {}
    for r in records:
        row = tuple(_hashable(r.value(k)) for k in layout.rows)
        col = _hashable(r.value(layout.cols)) if layout.cols else None
        if col not in layout.drop_cols:
            groups.setdefault((row, col), []).append(r)
    cells: dict[tuple[tuple[Any, ...], Any], Cell] = {}
    for key, members in groups.items():
        _check_only_seeds_differ(members, shown, layout)
        cell = Cell(runs=[m.run for m in members])
        for metric in layout.metrics:
            cell.values[metric] = [m.metrics.get(metric) for m in members]
        cells[key] = cell
    row_keys = sorted({k[0] for k in cells}, key=lambda row: [_sort_key(v) for v in row])
    col_keys = sorted({k[1] for k in cells}, key=_sort_key) if layout.cols else [None]
    return SweepTable(layout, row_keys, col_keys, cells)


def _check_only_seeds_differ(members: list[Record], shown: set[str], layout: Layout) -> None:
    keys = set().union(*(m.config for m in members)) - shown - {SEED}
    differing = sorted(k for k in keys if len({repr(m.config.get(k)) for m in members}) > 1)
    if differing:
        raise TableError(f"layout {layout.name}: runs {', '.join(m.run for m in members[:3])} share a cell but "
                         f"differ in {', '.join(differing[:5])}; add the key to the rows (--rows) or columns (--cols)")


def custom_layout(base: Layout, rows: list[str] | None, cols: str | None, metrics: list[str] | None) -> Layout:
    """``base`` with its rows, columns or metrics replaced (``cols="none"``: no column key)."""
    return Layout(base.name, base.title, tuple(rows) if rows else base.rows,
                  None if cols == "none" else cols or base.cols, tuple(metrics) if metrics else base.metrics,
                  base.plot if not (rows or cols or metrics) else None, base.drop_cols if not cols else (),
                  base.price_asr if not (rows or cols or metrics) else None)


def stealth_price(points: dict[Any, list[tuple[float, float, float | None]]],
                  asr_min: float) -> dict[Any, float | None]:
    """Per series of ``plot_points``: the highest x (PSNR) whose mean y (ASR) is at least
    ``asr_min``, or None where no point reaches it (issue 19's "stealth price")."""
    return {k: max((x for x, y, _ in pts if y >= asr_min), default=None) for k, pts in points.items()}


def plot_points(table: SweepTable) -> dict[Any, list[tuple[float, float, float | None]]]:
    """The layout's plot as series → sorted (x, y mean, y std) points."""
    plot = table.layout.plot
    assert plot is not None
    series: dict[Any, list[tuple[float, float, float | None]]] = {}
    idx = table.layout.rows.index(plot.series) if plot.series in table.layout.rows else None
    for (row, col), cell in table.cells.items():
        y, y_std, n = cell.stats(plot.y)
        x = col if plot.x == table.layout.cols else cell.stats(plot.x)[0]
        if y is None or x is None:
            continue
        series.setdefault(row[idx] if idx is not None else "", []).append((float(x), y, y_std))
    return {k: sorted(v) for k, v in series.items()}
