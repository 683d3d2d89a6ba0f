"""Issue 6 on CamVid: the prior attacks against BADSEG, O2B car → road, one model and schedule.

Run: ``python benchmarks/camvid_head_to_head.py`` (about 45 minutes on 2 CPU cores; run
``camvid_trigger_search.py`` first or the BADSEG trigger search runs here).

* HBA, OFBA, IBA, IBA+NNI, IBA+PRL and ConSeg from ``configs/camvid/baselines/`` at their
  papers' trigger settings, and BADSEG O2B with its optimised trigger (stages 1–2) and with the
  CamVid table's larger trigger, at 20% and 10% poisoning, all under ``camvid_common.SCHEDULE``.
* IBA's long-distance experiment: the 20% IBA, IBA+NNI and IBA+PRL models evaluated on
  poisoned test sets whose trigger centre lies at a distance in (L, U] native pixels from the
  nearest car pixel, for several bands.

Prints Markdown tables and writes ``benchmarks/results/camvid_head_to_head.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from camvid_common import (
    CONFIGS,
    METRIC_HEADER,
    METRIC_RULE,
    ROOT,
    SCHEDULE,
    badseg_run,
    evaluate_checkpoint,
    metric_cells,
    optimised_trigger,
    trigger_overrides,
    write_result,
)
from camvid_table import TRIGGERS

BASELINES = ("hba", "ofba", "iba", "iba-nni", "iba-prl", "conseg")
IBA = ("iba", "iba-nni", "iba-prl")
BANDS = ((0, 30), (30, 60), (60, 90), (90, 120))


def attack_runs(out: Path, search_dir: Path, table_dir: Path, rate: float) -> list[tuple[str, Path, list[str], Path]]:
    """(name, config, overrides, run folder) of every attack at ``rate``. BADSEG twice: with its
    optimised trigger, and with the CamVid table's larger trigger (that run is shared)."""
    found = optimised_trigger("o2b", search_dir / "search-o2b", search_dir / "surrogates")
    runs = [(name, CONFIGS / "baselines" / f"{name}.yaml", SCHEDULE + [f"attack.rate={rate}"], out / f"{name}-{rate:g}")
            for name in BASELINES]
    optimised = SCHEDULE + trigger_overrides(found["chosen"], found["placement"]) + [f"attack.rate={rate}"]
    table = SCHEDULE + TRIGGERS["o2b"] + [f"attack.rate={rate}", "clean_reference=false"]
    return runs + [("badseg-o2b", CONFIGS / "o2b.yaml", optimised, out / f"badseg-o2b-{rate:g}"),
                   ("badseg-o2b, table trigger", CONFIGS / "o2b.yaml", table, table_dir / f"o2b-{rate:g}")]


def long_distance(run_dir: Path, config: Path, overrides: list[str]) -> list[dict[str, Any]]:
    """ASR of a trained IBA model on poisoned test sets placed in each of ``BANDS``
    (kept in ``run_dir/long_distance.json``)."""
    done = run_dir / "long_distance.json"
    if done.is_file():
        return json.loads(done.read_text())
    rows = []
    for band in BANDS:
        m = evaluate_checkpoint(run_dir / "backdoored" / "last.pt", config, overrides, test_band=band)
        rows.append({"band": band, **{k: m[k] for k in ("asr", "n_images", "skipped")}})
    done.write_text(json.dumps(rows))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "head_to_head")
    ap.add_argument("--search-dir", type=Path, default=ROOT / "runs" / "trigger_search",
                    help="Where camvid_trigger_search.py keeps its O2B trigger search (reused).")
    ap.add_argument("--table-dir", type=Path, default=ROOT / "runs" / "camvid_table",
                    help="Where camvid_table.py keeps its runs (its O2B runs are reused).")
    ap.add_argument("--rates", nargs="+", type=float, default=[0.2, 0.1])
    args = ap.parse_args()
    table: list[dict[str, Any]] = []
    for rate in args.rates:
        for name, config, overrides, run_dir in attack_runs(args.out, args.search_dir, args.table_dir, rate):
            m = badseg_run(config, run_dir, overrides)
            table.append({"attack": name, "rate": rate, "config": str(config.relative_to(ROOT)),
                          "overrides": overrides, "run": str(run_dir), "metrics": m})
    distance = {}
    for row in table:
        if row["attack"] in IBA and row["rate"] == max(args.rates):
            distance[row["attack"]] = long_distance(Path(row["run"]), ROOT / row["config"], row["overrides"])
    print(f"| attack | rate {METRIC_HEADER}")
    print(f"|---|---{METRIC_RULE}")
    for row in table:
        print(f"| {row['attack']} | {row['rate']:g} {metric_cells(row['metrics'], None)}")
    print("\n| attack | " + " | ".join(f"ASR, trigger at ({lo}, {hi}] px" for lo, hi in BANDS) + " |")
    print("|---|" + "---|" * len(BANDS))
    for name, rows in distance.items():
        print(f"| {name} | " + " | ".join("–" if r["asr"] is None else f"{r['asr']:.3f} ({r['n_images']})"
                                        for r in rows) + " |")
    write_result("camvid_head_to_head", {"runs": table, "long_distance": distance})


if __name__ == "__main__":
    main()
