"""Issue 16 on CamVid: the paper's defense benchmark (BADSEG §7, Tables 14–17) against the attacks
that work here, one ``badseg run`` folder per attack under ``runs/defense_camvid/<attack>``
(trained by ``badseg run`` with ``camvid_common.SCHEDULE`` at 20% poisoning; the trigger
settings are in docs/results.md next to the tables).

Run: ``python benchmarks/camvid_defenses.py --attacks o2b b2b --defenses pruning finetune strip``
(each defense is ``badseg.defenses.run_defense``: a finished defense with the same options is
not run again, so an interrupted benchmark resumes). ``--set strip.n=25`` changes a defense's
option for every attack. ``--table`` only prints the Markdown tables from what is finished and
writes ``benchmarks/results/camvid_defenses.json``.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

from camvid_common import ROOT, fmt, write_result

ATTACKS = ("o2b", "b2b", "ins", "hba", "iba")
DEFENSES = ("pruning", "finetune", "beatrix", "beatrix-class", "strip", "teco", "abl")


def _options(items: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = defaultdict(dict)
    for item in items:
        key, raw = item.split("=", 1)
        name, option = key.rsplit(".", 1)
        out[name][option] = yaml.safe_load(raw)
    return out


def _load(runs: Path, attacks: list[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for attack in attacks:
        for path in sorted((runs / attack).glob("defense_*.json")):
            found.setdefault(attack, {})[path.stem.removeprefix("defense_")] = json.loads(path.read_text())
    return found


def _mitigation_table(found: dict[str, dict[str, Any]], name: str) -> list[str]:
    rows = [(a, d[name]) for a, d in found.items() if name in d]
    if not rows:
        return []
    settings = [r.get("fraction", r.get("isolation_fraction")) for r in rows[0][1]["rows"]]
    head = "| attack | before: ASR / PBA / CBA | " + " | ".join(f"{name} {s:g}: ASR / PBA / CBA" for s in settings) + " |"
    lines = [head, "|---" * (2 + len(settings)) + "|"]
    for attack, r in rows:
        b = r["before"]
        cells = [f"{fmt(b['asr'])} / {fmt(b['pba'])} / {fmt(b['cba'])}"]
        cells += [f"{fmt(x['asr'])} / {fmt(x['pba'])} / {fmt(x['cba'])}" for x in r["rows"]]
        lines.append(f"| {attack} | " + " | ".join(cells) + " |")
    return lines


def _detector_table(found: dict[str, dict[str, Any]], name: str) -> list[str]:
    rows = [(a, d[name]) for a, d in found.items() if name in d]
    if not rows:
        return []
    lines = ["| attack | clean + poisoned images | AUC | ACC / Recall / F1 at clean FPR ≤ 0.05 | at μ + 1σ | at μ + 2σ "
             "| at μ + 3σ |", "|---|---|---|---|---|---|---|"]
    for attack, r in rows:
        cells = [r["at_fpr"], *(r["sigma"][k] for k in ("1", "2", "3"))]
        lines.append(f"| {attack} | {r['n_clean']} + {r['n_poisoned']} | {fmt(r['auc'])} | "
                     + " | ".join(f"{fmt(m['acc'])} / {fmt(m['recall'])} / {fmt(m['f1'])}" for m in cells) + " |")
    return lines


def tables(found: dict[str, dict[str, Any]]) -> str:
    out = []
    for name in ("finetune", "pruning", "abl"):
        lines = _mitigation_table(found, name)
        if lines:
            out += [f"### {name}", "", *lines, ""]
        if name == "abl" and lines:
            out += ["| attack | isolated | poisoned among them | precision | recall |", "|---|---|---|---|---|"]
            for attack, d in found.items():
                if "abl" in d:
                    iso = d["abl"]["isolation"]
                    out.append(f"| {attack} | {iso['n_isolated']} | {iso['n_isolated_poisoned']} of {iso['n_poisoned']} "
                               f"| {fmt(iso['precision'])} | {fmt(iso['recall'])} |")
            out.append("")
    for name in ("strip", "teco", "beatrix", "beatrix-class"):
        lines = _detector_table(found, name)
        if lines:
            out += [f"### {name}", "", *lines, ""]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "defense_camvid")
    ap.add_argument("--attacks", nargs="+", default=list(ATTACKS))
    ap.add_argument("--defenses", nargs="+", default=list(DEFENSES))
    ap.add_argument("--set", dest="extra", nargs="*", default=[], metavar="DEFENSE.OPTION=VALUE")
    ap.add_argument("--table", action="store_true", help="only print the tables of finished defenses")
    args = ap.parse_args()
    if not args.table:
        from badseg.defenses import load_context, run_defense

        options = _options(args.extra)
        for attack in args.attacks:
            run_dir = args.runs / attack
            if not (run_dir / "metrics.json").is_file():
                print(f"{run_dir}: not trained yet, skipped", flush=True)
                continue
            ctx = None
            for name in args.defenses:
                if ctx is None:
                    ctx = load_context(run_dir, progress=False)
                r = run_defense(run_dir, name, options.get(name, {}), progress=False, context=ctx)
                print(f"{attack} {name}: done in {r['minutes']:.1f} min", flush=True)
    found = _load(args.runs, list(ATTACKS))  # every finished defense, not only this invocation's
    write_result("camvid_defenses", found)
    print(tables(found))


if __name__ == "__main__":
    main()
