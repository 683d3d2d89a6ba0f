"""The stealth frontier on CamVid (issue 19): one ledger of every victim run, figures per vector.

The ledger ``benchmarks/results/camvid_frontier.csv`` holds one row per victim run of the
frontier protocol (CamVid train → val, 10 % of the training set poisoned, PSNR at the native
360×480 over every triggered val image, CBA against the same seed's clean reference model):
vector, method, victim pipeline, the method's setting, seed, PSNR, ASR, CBA − clean in points,
the number of triggered val images where it is not all 101, and where the row comes from. Rows
from sweep folders that no longer exist were copied from docs/results.md (their ``source`` says
which pass); ``add`` appends a sweep folder's finished runs straight from their metrics.json.

``plot`` pools seeds per (vector, pipeline, method, setting) — mean ± sample std of PSNR, ASR
and CBA − clean — and writes, per vector, ASR against PSNR with one curve per method and one
panel per pipeline (``docs/figures/frontier/frontier-VECTOR-methods.png``), the goal's corner
(ASR ≥ 0.9 at ≥ 40 dB) shaded, and a Markdown table with each method's stealth price (the
highest mean PSNR at which its mean ASR reaches 0.9, ``badseg.report.tables.stealth_price``)
in ``benchmarks/results/camvid_frontier.md``.

    python benchmarks/camvid_frontier.py add runs/paper-camvid-stage2 --method "stage 2 + screen" \\
        --setting "fine grid · 40 dB budget" --sweep stage2 --where grid=screen
    python benchmarks/camvid_frontier.py plot
"""

from __future__ import annotations

import argparse
import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from badseg.data.io import atomic_open, atomic_write_bytes
from badseg.report.tables import Cell, Record, load_records, select_records, stealth_price

ROOT = Path(__file__).resolve().parents[1]
LEDGER = ROOT / "benchmarks" / "results" / "camvid_frontier.csv"
TABLE = ROOT / "benchmarks" / "results" / "camvid_frontier.md"
FIGURES = ROOT / "docs" / "figures" / "frontier"
FIELDS = ("vector", "method", "pipeline", "setting", "seed", "psnr", "asr", "cba_delta", "test_images", "source")
KEY = ("vector", "method", "pipeline", "setting", "seed")
GOAL_ASR, GOAL_PSNR = 0.9, 40.0


def read_ledger(path: Path = LEDGER) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def write_ledger(rows: Sequence[dict[str, Any]], path: Path = LEDGER) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, FIELDS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_bytes(path, buf.getvalue().encode())


def pipeline_label(pipeline: dict[str, Any]) -> str:
    """metrics.json's ``pipeline`` (``build.victim_pipeline``) as ``resize 144×192`` / ``crop 288×384``."""
    size = pipeline["train_size"]
    return f"{pipeline['train']} {'native' if size == 'native' else '×'.join(map(str, size))}"


def trigger_label(attack: dict[str, Any]) -> str:
    """metrics.json's ``attack`` as a setting: ``logo 1/10 centre ×4 α0.4``, ``cover 1/4 α0.05``."""
    t = attack["trigger"]
    if attack["placement"] == "cover":
        small = f" / {t['small_intensity']:g} under {t['small_area_px']} px" if t.get("small_intensity") else ""
        return f"cover {t['size_fraction']} α{t['intensity']:g}{small}"
    return f"{t['shape']} {t['size_fraction']} {attack['placement']} ×{t['quantity']} α{t['intensity']:g}"


def ledger_row(record: Record, method: str, setting: str | None, source: str) -> dict[str, Any]:
    """One finished run as a ledger row; ``setting`` defaults to the run's trigger (``trigger_label``;
    a searched trigger's runs should share one ``setting``, e.g. the budget)."""
    m = record.metrics
    setting = setting or trigger_label(m["attack"])
    delta = None if m.get("clean_model_cba") is None else round(100 * (m["cba"] - m["clean_model_cba"]), 1) + 0.0
    return {"vector": record.config["attack.vector"], "method": method, "pipeline": pipeline_label(m["pipeline"]),
            "setting": setting, "seed": record.config["seed"], "psnr": f"{m['psnr']:.2f}", "asr": f"{m['asr']:.3f}",
            "cba_delta": "" if delta is None else f"{delta:.1f}",
            "test_images": m["n_poisoned_test"] if m["n_poisoned_test"] != m["n_test"] else "",
            "source": f"{source} ({record.run})"}


def add(sweep_dir: Path, method: str, setting: str | None, sweeps: list[str] | None, where: list[str],
        source: str) -> list[dict[str, Any]]:
    """Merge ``sweep_dir``'s finished runs (those of ``sweeps``, matching ``where``) into the
    ledger; a row with the same vector, method, pipeline, setting and seed is replaced."""
    records = select_records(load_records(sweep_dir, sweeps), where)
    if not records:
        raise SystemExit(f"no finished runs in {sweep_dir} match {where or 'the sweep'}")
    new = [ledger_row(r, method, setting, source) for r in records]
    keys = {tuple(str(r[k]) for k in KEY) for r in new}
    kept = [r for r in read_ledger() if tuple(r[k] for k in KEY) not in keys]
    write_ledger(kept + new)
    return new


def _number(text: str) -> float | None:
    return float(text) if text not in ("", None) else None


def pooled(rows: Sequence[dict[str, str]]) -> dict[tuple[str, str], dict[str, list[dict[str, Any]]]]:
    """(vector, pipeline) → method → points, one per setting: mean and std over seeds of PSNR, ASR
    and CBA − clean, n, the seeds and each seed's (PSNR, ASR), sorted by PSNR."""
    cells: dict[tuple[str, ...], Cell] = {}
    for r in rows:
        cell = cells.setdefault((r["vector"], r["pipeline"], r["method"], r["setting"]), Cell())
        for metric in ("psnr", "asr", "cba_delta"):
            cell.values.setdefault(metric, []).append(_number(r[metric]))
        cell.runs.append(r["seed"])
    out: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = {}
    for (vector, pipeline, method, setting), cell in cells.items():
        point = {"setting": setting, "seeds": sorted(cell.runs),
                 "per_seed": list(zip(cell.values["psnr"], cell.values["asr"]))}
        for metric in ("psnr", "asr", "cba_delta"):
            point[metric], point[f"{metric}_std"], point[f"{metric}_n"] = cell.stats(metric)
        out.setdefault((vector, pipeline), {}).setdefault(method, []).append(point)
    for methods in out.values():
        for points in methods.values():
            points.sort(key=lambda p: p["psnr"])
    return out


def prices(methods: dict[str, list[dict[str, Any]]]) -> dict[str, float | None]:
    """Each method's stealth price: the highest mean PSNR whose mean ASR is ≥ 0.9."""
    return stealth_price({m: [(p["psnr"], p["asr"], p["asr_std"]) for p in pts] for m, pts in methods.items()},
                         GOAL_ASR)


def _pm(mean: float | None, std: float | None, digits: int) -> str:
    if mean is None:
        return "–"
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _price_text(points: Sequence[dict[str, Any]], price: float | None) -> str:
    if price is None:
        return "none"
    n = max(len(p["seeds"]) for p in points if p["psnr"] == price)
    return f"{price:.2f} dB ({n} seed{'s' if n > 1 else ''})"


def markdown(frontier: dict[tuple[str, str], dict[str, list[dict[str, Any]]]]) -> str:
    lines = []
    for (vector, pipeline), methods in sorted(frontier.items()):
        lines += [f"**{vector.upper()}, {pipeline}**", "",
                  "| method | setting | seeds | PSNR (dB) | ASR | CBA − clean (points) |", "|---|---|---|---|---|---|"]
        for method, points in methods.items():
            for p in points:
                n = len(p["seeds"])
                cba_n = "" if p["cba_delta_n"] in (0, n) else f" ({p['cba_delta_n']} of {n} seeds)"
                lines.append(f"| {method} | {p['setting']} | {n} | {_pm(p['psnr'], p['psnr_std'], 2)} | "
                             f"{_pm(p['asr'], p['asr_std'], 3)} | {_pm(p['cba_delta'], p['cba_delta_std'], 1)}{cba_n} |")
        price = prices(methods)
        lines += ["", "Stealth price (highest mean PSNR at mean ASR ≥ 0.9, with the seeds of that point): "
                  + "; ".join(f"{m} {_price_text(methods[m], v)}" for m, v in price.items()), ""]
    return "\n".join(lines)


def pareto(points: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The points no other point beats on both mean PSNR and mean ASR, by PSNR: a method's frontier."""
    return [p for p in points if not any(q["psnr"] >= p["psnr"] and q["asr"] >= p["asr"]
                                         and (q["psnr"], q["asr"]) != (p["psnr"], p["asr"]) for q in points)]


def save_figures(frontier: dict[tuple[str, str], dict[str, list[dict[str, Any]]]]) -> list[Path]:
    """One figure per vector: a panel per pipeline (the CamVid tables' ``resize 144×192`` first),
    every setting's ASR (mean ± std over seeds) against its PSNR (mean ± std) with its seeds as
    faint crosses, a line through each method's Pareto frontier, one colour per method in every
    panel, the goal's corner shaded."""
    written = []
    psnrs = [p["psnr"] for methods in frontier.values() for points in methods.values() for p in points]
    for vector in sorted({v for v, _ in frontier}):
        pipelines = sorted((p for v, p in frontier if v == vector), key=lambda p: (p != "resize 144×192", p))
        names = sorted({m for p in pipelines for m in frontier[(vector, p)]})
        colour = {m: f"C{i}" for i, m in enumerate(names)}
        fig = Figure(figsize=(5.2 * len(pipelines), 4.6), dpi=110)
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, len(pipelines), squeeze=False, sharex=True, sharey=True)[0]
        for ax, pipeline in zip(axes, pipelines):
            methods = frontier[(vector, pipeline)]
            price = prices(methods)
            ax.axvspan(GOAL_PSNR, 80, ymin=GOAL_ASR / 1.02, ymax=1, color="tab:green", alpha=0.12,
                       label="goal: ASR ≥ 0.9 at ≥ 40 dB")
            for method, points in methods.items():
                ax.errorbar([p["psnr"] for p in points], [p["asr"] for p in points],
                            xerr=[p["psnr_std"] or 0.0 for p in points], yerr=[p["asr_std"] or 0.0 for p in points],
                            fmt="o", color=colour[method], capsize=3, alpha=0.8,
                            label=f"{method} (price {'–' if price[method] is None else f'{price[method]:.1f} dB'})")
                runs = [xy for p in points if len(p["per_seed"]) > 1 for xy in p["per_seed"]]
                if runs:
                    ax.scatter(*zip(*runs), s=12, marker="x", color=colour[method], alpha=0.45, linewidths=0.8)
                front = pareto(points)
                ax.plot([p["psnr"] for p in front], [p["asr"] for p in front], color=colour[method], linewidth=1.2)
            ax.set_xlim(min(psnrs) - 1.5, max(psnrs) + 1.5)
            ax.set_ylim(0, 1.02)
            ax.set_xlabel("PSNR at native resolution (dB)")
            ax.set_ylabel("ASR")
            ax.set_title(f"{vector.upper()} at 10 %, victim: {pipeline}", fontsize=10)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="lower left")
        fig.tight_layout()
        path = FIGURES / f"frontier-{vector}-methods.png"
        with atomic_open(path) as f:
            fig.savefig(f, format="png")
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser("add", help="merge a sweep folder's finished runs into the ledger")
    a.add_argument("sweep_dir", type=Path)
    a.add_argument("--method", required=True)
    a.add_argument("--setting", help="one setting for every run (a searched trigger's budget); "
                                     "default: each run's trigger, e.g. 'logo 1/10 centre ×4 α0.4'")
    a.add_argument("--sweep", action="append", help="only the runs of this sweep file (stem; repeatable)")
    a.add_argument("--where", action="append", default=[], help="key=value, as badseg table --where")
    a.add_argument("--source", default="sweep", help="where the runs come from, e.g. the results.md pass")
    sub.add_parser("plot", help="the figures and the Markdown table from the ledger")
    args = parser.parse_args()
    if args.command == "add":
        for row in add(args.sweep_dir, args.method, args.setting, args.sweep, args.where, args.source):
            print(", ".join(f"{k}={row[k]}" for k in FIELDS[:8]))
        return
    frontier = pooled(read_ledger())
    text = markdown(frontier)
    atomic_write_bytes(TABLE, text.encode())
    print(text)
    print("wrote", TABLE, *save_figures(frontier))


if __name__ == "__main__":
    main()
