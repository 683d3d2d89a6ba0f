"""The ``badseg`` command line (Typer + rich)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from collections.abc import Callable
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode="markdown",
                  help="Backdoor attacks on semantic segmentation (BADSEG and the attacks it is compared with).")
console = Console()

DatasetOpt = Annotated[str, typer.Option("--dataset", "-d", help="Dataset reader (see `badseg datasets`).")]
RootOpt = Annotated[Optional[Path], typer.Option("--root", help="Dataset root folder (not needed for synthetic).")]


def _fail(message: str) -> None:
    """Print one error message (unwrapped, so paths stay whole) and exit with status 2."""
    console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True, highlight=False)
    raise typer.Exit(2)


#: What a bad input raises (badseg's own errors are ValueError or KeyError subclasses; OSError: a file
#: that cannot be read or written). Each becomes one message and exit status 2.
USER_ERRORS = (ValueError, KeyError, OSError)

def _message(error: BaseException) -> str:
    """The text of an error (a KeyError's own message, not its quoted repr)."""
    if isinstance(error, KeyError) and error.args:
        return str(error.args[0])
    return str(error)


def _at_least(low: int) -> Callable[[int | None], int | None]:
    """An option callback refusing values below ``low``, naming the value (typer's ``min=`` does not)."""
    def check(value: int | None) -> int | None:
        if value is not None and value < low:
            raise typer.BadParameter(f"{value} is below {low}")
        return value
    return check


def _fraction(value: float | None) -> float | None:
    if value is not None and not 0.0 <= value <= 1.0:
        raise typer.BadParameter(f"{value} is not a fraction in [0, 1]")
    return value


SplitOpt = Annotated[str, typer.Option(help="Dataset split, e.g. train or val.")]
SeedOpt = Annotated[int, typer.Option(help="Seed of the poisoned-sample choice and of every per-sample draw.")]


def _pair(text: str | None, what: str) -> tuple[float, float] | None:
    """"L,U" → (L, U)."""
    if text is None:
        return None
    parts = text.split(",")
    try:
        lo, hi = (float(p) for p in parts)
    except ValueError:
        raise ValueError(f"{what} must be two numbers 'L,U', got {text!r}") from None
    return lo, hi


def _matrix(text: str | None) -> dict[str, str] | None:
    """"person:road,car:sidewalk" → {"person": "road", "car": "sidewalk"}."""
    if text is None:
        return None
    pairs = [item.split(":") for item in text.split(",") if item.strip()]
    if any(len(p) != 2 for p in pairs):
        raise ValueError(f"--matrix must be 'victim:target,...', got {text!r}")
    return {a.strip(): b.strip() for a, b in pairs}


@app.command()
def datasets() -> None:
    """List the dataset readers and their classes (object or stuff)."""
    from badseg.data import dataset_names, get_spec

    for name in dataset_names():
        spec = get_spec(name)
        table = Table(title=f"{name} ({spec.num_classes} classes, ignore {spec.ignore_index})", title_justify="left")
        table.add_column("id", justify="right")
        table.add_column("class")
        table.add_column("kind")
        for i, (c, k) in enumerate(zip(spec.classes, spec.kinds)):
            table.add_row(str(i), c, "[cyan]object[/]" if k == "object" else "stuff")
        console.print(table)


@app.command()
def show(dataset: DatasetOpt, out: Annotated[Path, typer.Option("--out", "-o", help="PNG to write.")],
         root: RootOpt = None, split: SplitOpt = "train",
         index: Annotated[int, typer.Option(help="Sample number in the split (0 = first, -1 = last).")] = 0) -> None:
    """Render one sample: image, label overlay and instances side by side."""
    from badseg.data import load_dataset
    from badseg.data.instances import instance_map
    from badseg.report.figures import save_sample_panel

    if out.is_dir():
        _fail(f"--out {out} is a folder; name the PNG to write, e.g. {out / 'sample.png'}")
    try:
        ds = load_dataset(dataset, root=root, split=split)
        sample = ds[index]
        save_sample_panel(sample, ds.spec, out, instances=instance_map(sample.label, sample.instances, ds.spec),
                          title=f"{dataset}/{split} #{index} ({sample.id})")
    except (*USER_ERRORS, IndexError) as e:
        _fail(_message(e))
    console.print(f"wrote {out}")


#: ``badseg poison`` shortcut flags → the config key each one sets.
POISON_SHORTCUTS: dict[str, str] = {
    "dataset": "data.name", "root": "data.root", "attack": "attack.vector", "victim": "attack.victim",
    "target": "attack.target", "rate": "attack.rate", "rate_of": "attack.rate_of", "select": "attack.select",
    "seed": "seed", "shape": "trigger.shape",
    "size": "trigger.size", "intensity": "trigger.intensity", "quantity": "trigger.quantity",
    "pattern": "trigger.pattern", "min_size_px": "trigger.min_size_px",
    **{k: f"attack.options.{k}" for k in ("placement", "carriers", "k", "condition", "decoy_rate", "matrix",
                                          "line_width", "line_row", "trigger_class", "band", "test_band", "pick",
                                          "prl_pixels", "classes", "context_px")},
    "hba_mode": "attack.options.mode",
}


@app.command()
def poison(
    out: Annotated[Path, typer.Option("--out", "-o", help="New folder for the poisoned copy.")],
    config: Annotated[Optional[Path], typer.Argument(
        help="YAML config (the same as for `badseg run`): data, attack, trigger, seed. The flags below are "
             "shortcuts that override it, then --set.")] = None,
    split: Annotated[Optional[str], typer.Option(help="Split to poison (default: the config's data.train_split).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override, e.g. attack.options.carriers=all.")] = None,
    dataset: Annotated[Optional[str], typer.Option("--dataset", "-d", help="Dataset reader (see `badseg datasets`).")] = None,
    root: RootOpt = None,
    attack: Annotated[Optional[str], typer.Option("--attack", "-a", help="Attack vector: o2o, o2b, b2o, b2b, ins, "
                                                  "con; or a prior attack: hba, iba, iba-nni, iba-prl, ofba, conseg.")] = None,
    victim: Annotated[Optional[str], typer.Option(help="Victim class name.")] = None,
    target: Annotated[Optional[str], typer.Option(help="Target class name.")] = None,
    rate: Annotated[Optional[float], typer.Option(callback=_fraction, help="Fraction of the split to poison (of the samples "
                                                  "the attack applies to with --rate-of applicable).")] = None,
    rate_of: Annotated[Optional[str], typer.Option(help="dataset (default, the paper's meaning) or applicable.")] = None,
    select: Annotated[Optional[str], typer.Option(help="Which applicable samples to poison: random (default) or "
                                                  "most_victim (those with the most victim pixels).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of the poisoned-sample choice and of every per-sample draw.")] = None,
    shape: Annotated[Optional[str], typer.Option(help="Trigger shape: circle, square, triangle, logo.")] = None,
    size: Annotated[Optional[float], typer.Option(help="Trigger width: fraction of the object width (B2B, IBA: "
                                                  "image width).")] = None,
    intensity: Annotated[Optional[float], typer.Option(help="Alpha-blend strength in [0, 1].")] = None,
    quantity: Annotated[Optional[int], typer.Option(help="Stamps per triggered region.")] = None,
    pattern: Annotated[Optional[str], typer.Option(help="checker, stripes, noise or solid:COLOUR; any of them tinted as BASE:COLOUR, e.g. stripes:red.")] = None,
    min_size_px: Annotated[Optional[int], typer.Option(help="Smallest stamp width in pixels.")] = None,
    placement: Annotated[Optional[str], typer.Option(help="centre, random_inside, random_outside, scatter.")] = None,
    carriers: Annotated[Optional[str], typer.Option(help="O2O, O2B: stamp the largest victim object or all.")] = None,
    k: Annotated[Optional[int], typer.Option(help="INS, OFBA: instances to trigger (omit for 1; 0 = all).")] = None,
    condition: Annotated[Optional[str], typer.Option(help="CON: condition an object must meet, e.g. red.")] = None,
    decoy_rate: Annotated[Optional[float], typer.Option(help="CON: share of other objects given a decoy trigger.")] = None,
    hba_mode: Annotated[Optional[str], typer.Option(help="HBA relabelling: 1to1 (default), nto1, matrix.")] = None,
    matrix: Annotated[Optional[str], typer.Option(help="HBA matrix mode: more pairs, 'person:road,car:sky'.")] = None,
    line_width: Annotated[Optional[int], typer.Option(help="HBA: line height in px (default 8).")] = None,
    line_row: Annotated[Optional[float], typer.Option(help="HBA: line position, 0 = top (default) .. 1 = bottom.")] = None,
    trigger_class: Annotated[Optional[str], typer.Option(help="HBA semantic trigger: this class, image unchanged.")] = None,
    band: Annotated[Optional[str], typer.Option(help="IBA: 'L,U', trigger centre at distance (L, U] from the victim.")] = None,
    test_band: Annotated[Optional[str], typer.Option(help="IBA: the band of the poisoned test set.")] = None,
    pick: Annotated[Optional[str], typer.Option(help="IBA-NNI: nearest (default) or random position in the band.")] = None,
    prl_pixels: Annotated[Optional[int], typer.Option(help="IBA-PRL: pixels randomly relabelled (default 100).")] = None,
    classes: Annotated[Optional[str], typer.Option(help="OFBA: object classes triggered, 'car,pedestrian' (default all).")] = None,
    context_px: Annotated[Optional[int], typer.Option(help="ConSeg: rebuilt context band in px (default 4).")] = None,
    workers: Annotated[Optional[int], typer.Option(callback=_at_least(1), help="Processes (default: the config's workers, else all cores).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an earlier export at --out (never any other folder).")] = False,
    layout: Annotated[str, typer.Option(help="source: the source's own folders and label ids (a drop-in copy); "
                                        "badseg: images/<id>.png, labels/<id>.png with class ids.")] = "source",
    sheet: Annotated[int, typer.Option(callback=_at_least(0), help="Poisoned samples shown in out/contact_sheet.png (0: none).")] = 6,
    limit: Annotated[Optional[int], typer.Option(callback=_at_least(1), help="Only the first N samples (quick looks; default: the config's "
                                                 "data.limit_train for the training split).")] = None,
) -> None:
    """Write a poisoned copy of a dataset split plus manifest.json (DESIGN §6), from the same
    config as `badseg run` (or from the shortcut flags alone)."""
    from badseg.build import attack_for, dataset_for
    from badseg.config import load_config
    from badseg.poisoning.export import export_poisoned
    from badseg.poisoning.preview import save_poison_sheet

    given = {"dataset": dataset, "root": str(root) if root else None, "attack": attack, "victim": victim,
             "target": target, "rate": rate, "rate_of": rate_of, "select": select, "seed": seed, "shape": shape,
             "size": size, "intensity": intensity,
             "quantity": quantity, "pattern": pattern, "min_size_px": min_size_px, "placement": placement,
             "carriers": carriers, "k": k, "condition": condition, "decoy_rate": decoy_rate, "hba_mode": hba_mode,
             "line_width": line_width, "line_row": line_row, "trigger_class": trigger_class, "pick": pick,
             "prl_pixels": prl_pixels, "context_px": context_px}
    try:
        given.update(matrix=_matrix(matrix), band=_pair(band, "--band"), test_band=_pair(test_band, "--test-band"),
                     classes=classes.split(",") if classes else None)
        values = {POISON_SHORTCUTS[name]: v for name, v in given.items() if v is not None}
        if k == 0:
            values[POISON_SHORTCUTS["k"]] = None  # all instances
        cfg = load_config(config, set_ or [], values=values)
        if layout not in ("source", "badseg"):
            raise ValueError(f"--layout must be 'source' or 'badseg', got {layout!r}")
        split = split or cfg.data.train_split
        if limit is None and split == cfg.data.train_split:
            limit = cfg.data.limit_train
        ds = dataset_for(cfg.data, split, limit)
        atk = attack_for(cfg, ds)
        export_config = {"dataset": cfg.data.name, "root": cfg.data.root, "split": split, **atk.describe(),
                         "options": cfg.attack.options, "run_config": cfg.model_dump(mode="json")}
        manifest = export_poisoned(ds, atk, cfg.attack.rate, out, seed=cfg.seed, workers=workers or cfg.workers,
                                   source=Path(cfg.data.root) if cfg.data.root else None, overwrite=overwrite,
                                   config=export_config, rate_of=cfg.attack.rate_of, layout=layout,
                                   select=cfg.attack.select)
    except USER_ERRORS as e:
        _fail(_message(e))
    if sheet:
        save_poison_sheet(ds, atk, manifest, out / "contact_sheet.png", n=sheet)
    count = manifest["poison_count"]
    capped = f" (rate {count['rate']} asks for {count['n_wanted']}: capped)" if count["capped"] else ""
    console.print(f"poisoned {manifest['n_poisoned']} of {manifest['n_samples']} samples, {manifest['n_applicable']} "
                  f"applicable{capped}; {manifest['layout']} layout → {out}")
    for reason, n in manifest["skipped"].items():
        console.print(f"  skipped {n}: {reason}")


def _trigger_text(attack: dict) -> str:
    """A described attack's trigger as it is applied (HBA draws a line, whatever the trigger's shape)."""
    t, render = attack["trigger"], attack.get("render")
    if isinstance(render, dict) and render.get("kind") == "LineTrigger":
        return f"line {render['width_px']} px, {t['pattern']}, intensity {t['intensity']:g}"
    context = f" + context {render['context_px']} px" if isinstance(render, dict) and "context_px" in render else ""
    stamps = f"{t['quantity']} × " if t["quantity"] > 1 else ""
    return f"{stamps}{t['shape']} {t['size']:g}, {t['pattern']}, intensity {t['intensity']:g}{context}"


@app.command()
def stealth(
    configs: Annotated[list[Path], typer.Argument(help="YAML experiment configs (as for `badseg run`).")],
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override for every config, e.g. trigger.intensity=0.2.")] = None,
    lpips_weights: Annotated[Optional[Path], typer.Option(help="torchvision's AlexNet ImageNet weights for LPIPS "
                                                          "(default: the config's lpips_weights; never downloaded).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="JSON file for the rows.")] = None,
) -> None:
    """PSNR / SSIM / LPIPS of each config's poisoned test set, built exactly as `badseg run` builds it
    (every applicable test image, triggered at native resolution); no training."""
    import json

    from badseg.config import load_config
    from badseg.data.io import atomic_write_bytes
    from badseg.evaluate import config_stealth

    rows = []
    try:
        for config in configs:
            cfg = load_config(config, set_ or [])
            row = config_stealth(cfg, str(lpips_weights) if lpips_weights else None, progress=console.is_terminal)
            rows.append({"config": str(config), "overrides": list(set_ or []), **row})
        if out is not None:
            atomic_write_bytes(out, (json.dumps(rows, indent=2) + "\n").encode())
    except USER_ERRORS as e:
        _fail(_message(e))
    table = Table(title="stealth of the poisoned test set", title_justify="left")
    for col, right in (("config", False), ("attack", False), ("pair", False), ("trigger", False),
                       ("test images (skipped)", True), ("PSNR (dB)", True), ("SSIM", True), ("LPIPS", True)):
        table.add_column(col, justify="right" if right else "left")

    def f(v, digits):
        return "n/a" if v is None else f"{v:.{digits}f}"

    for r in rows:
        a = r["attack"]
        table.add_row(r["config"], a["attack"], f"{a['victim']} → {a['target']}", _trigger_text(a),
                      f"{r['n_images']} ({r['n_skipped']})", f(r["psnr"], 2), f(r["ssim"], 4), f(r["lpips"], 4))
    console.print(table)
    reasons = {r["lpips_reason"] for r in rows if r["lpips"] is None}
    for reason in reasons:
        console.print(f"LPIPS n/a: {escape(reason)}", soft_wrap=True, highlight=False)
    if out is not None:
        console.print(f"wrote {out}")


@app.command()
def scan(
    config: Annotated[Path, typer.Argument(help="YAML experiment config (as for `badseg run` or `badseg poison`).")],
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override, e.g. attack.rate=0.1.")] = None,
    condition: Annotated[Optional[list[str]], typer.Option(
        "--condition", help="CON: one row per condition predicate, e.g. red or 'dark&width>=40' (repeatable).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="JSON file for the rows.")] = None,
) -> None:
    """How many training and test images the config's attack applies to, and how many its rate
    poisons; nothing is written but --out (CON: images are read to test each condition)."""
    import json

    from badseg.build import scan_config
    from badseg.config import load_config
    from badseg.data.io import atomic_write_bytes

    variants = [[f"attack.options.condition={c}"] for c in condition] if condition else [[]]
    rows = []
    try:
        for extra in variants:
            cfg = load_config(config, [*(set_ or []), *extra])
            rows.append({"condition": cfg.attack.options.get("condition"), **scan_config(cfg)})
        if out is not None:
            atomic_write_bytes(out, (json.dumps(rows, indent=2) + "\n").encode())
    except USER_ERRORS as e:
        _fail(_message(e))
    a = rows[0]["attack"]
    table = Table(title=f"where {a['attack']} {a['victim']} → {a['target']} applies", title_justify="left")
    cols = (["condition"] if condition else []) + ["train: applicable / images", "poisoned (rate)",
                                                   "test: applicable / images", "most skipped (train)"]
    for col in cols:
        table.add_column(col, justify="left" if col in ("condition", "most skipped (train)") else "right")
    for r in rows:
        tr, te, count = r["train"], r["test"], r["train"]["poison_count"]
        top = next(iter(tr["skipped"].items()), None)
        capped = ", capped" if count["capped"] else ""
        cells = [f"{tr['n_applicable']} / {tr['n_samples']}",
                 f"{count['n_poisoned']} ({count['rate']:g} of the {count['rate_of']}{capped})",
                 f"{te['n_applicable']} / {te['n_samples']}", f"{top[1]} × {top[0]}" if top else "–"]
        table.add_row(*([str(r["condition"])] if condition else []), *cells)
    console.print(table)
    if out is not None:
        console.print(f"wrote {out}")


def _print_metrics(metrics: dict, out: Path) -> None:
    table = Table(title="results", title_justify="left")
    for col in ("ASR", "PBA", "CBA", "clean CBA", "PSNR", "SSIM", "LPIPS"):
        table.add_column(col, justify="right")

    def f(v, digits=3):
        return "n/a" if v is None else f"{v:.{digits}f}"

    table.add_row(f(metrics.get("asr")), f(metrics.get("pba")), f(metrics.get("cba")),
                  f(metrics.get("clean_model_cba")), f(metrics.get("psnr"), 1), f(metrics.get("ssim")),
                  f(metrics.get("lpips")))
    console.print(table)
    console.print(f"report: {out / 'report.md'}  metrics: {out / 'metrics.json'}")


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="YAML experiment config (see configs/).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder (re-run the same command to resume).")],
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override, e.g. trigger.size=0.25.")] = None,
) -> None:
    """Run one experiment: poison, train, evaluate, report."""
    from badseg.config import load_config
    from badseg.pipeline import run_experiment

    from badseg.sam.config import is_sam_config

    if is_sam_config(config):
        _run_sam(config, out, set_ or [])
        return
    try:
        cfg = load_config(config, set_ or [])
        metrics = run_experiment(cfg, out, log=console.print)
    except USER_ERRORS as e:
        _fail(_message(e))
    _print_metrics(metrics, out)


def _run_sam(config: Path, out: Path, overrides: list[str]) -> None:
    """``badseg run`` for a ``task: sam`` config (BADSEG-SAM, ``badseg.sam.experiment``)."""
    from badseg.sam.config import load_sam_config
    from badseg.sam.experiment import run_sam_experiment

    try:
        metrics = run_sam_experiment(load_sam_config(config, overrides), out, log=console.print)
    except USER_ERRORS as e:
        _fail(_message(e))
    table = Table(title=f"BADSEG-SAM Mask-{metrics['attack']['attack']}, fine-tuned: {metrics['trainable']}")
    cols = ("asr", "iou_to_target", "clean_utility_before", "clean_utility_after", "clean_model_asr")
    for col in cols:
        table.add_column(col, justify="right")
    table.add_row(*(f"{metrics[c]:.3f}" for c in cols))
    console.print(table)
    console.print(f"weights: {metrics['weights']}")
    console.print(f"report: {out / 'report.md'}  metrics: {out / 'metrics.json'}")


@app.command()
def defend(
    run_dir: Annotated[Path, typer.Argument(help="A finished `badseg run` folder.")],
    defense: Annotated[list[str], typer.Option("--defense", "-d", help="Defense to run (repeatable): finetune, "
                                               "pruning, abl, strip, teco, beatrix, beatrix-class.")],
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Defense option, e.g. n=50 or "
                                                      "fractions=[0.01,0.05].")] = None,
) -> None:
    """Run defenses on a trained run: writes `defense_<name>.json`, its figure and a report section."""
    from badseg.defenses import load_context, run_defense
    from badseg.defenses.runner import parse_options, resolve_options

    try:
        for name in defense:
            resolve_options(name, parse_options(set_ or []))  # unknown names and options fail before any work
        ctx = load_context(run_dir, progress=console.is_terminal)
        for name in defense:
            result = run_defense(run_dir, name, set_ or [], progress=console.is_terminal, log=console.print,
                                 context=ctx)
            _print_defense(name, result)
    except USER_ERRORS as e:
        _fail(_message(e))


def _print_defense(name: str, r: dict) -> None:
    def f(v):
        return "–" if v is None else f"{v:.3f}"

    if r["kind"] == "mitigation":
        b = r["before"]
        console.print(f"{name}: before ASR {f(b['asr'])} PBA {f(b['pba'])} CBA {f(b['cba'])}")
        for row in r["rows"]:
            setting = {k: v for k, v in row.items() if k in ("fraction", "isolation_fraction")}
            console.print(f"  {setting}: ASR {f(row['asr'])} PBA {f(row['pba'])} CBA {f(row['cba'])}")
    else:
        m = r["at_fpr"]
        console.print(f"{name}: AUC {f(r['auc'])} ({r['n_clean']} clean, {r['n_poisoned']} poisoned); at clean FPR "
                      f"≤ {r['target_fpr']:g}: ACC {f(m['acc'])} Recall {f(m['recall'])} F1 {f(m['f1'])}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder.")] = Path("runs/demo"),
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override, e.g. train.epochs=2.")] = None,
) -> None:
    """The whole attack on built-in synthetic streets: O2B car → road at 10% poisoning, with a
    clean reference model; no download, a few minutes on 2 CPU cores."""
    from badseg.config import DEMO_CONFIG, load_config
    from badseg.pipeline import run_experiment

    try:
        cfg = load_config(DEMO_CONFIG, set_ or [])
        console.print(f"badseg demo → {out}")
        metrics = run_experiment(cfg, out, log=console.print)
    except USER_ERRORS as e:
        _fail(_message(e))
    _print_metrics(metrics, out)


def _search_sam(config: Path, out: Path, overrides: list[str]) -> None:
    """``badseg optimize-trigger`` for a ``task: sam`` config (``badseg.sam.search``)."""
    from badseg.sam.config import load_sam_config
    from badseg.sam.search import search_sam_trigger

    try:
        result = search_sam_trigger(load_sam_config(config, overrides), out, log=console.print)
    except USER_ERRORS as e:
        _fail(_message(e))
    console.print(f"chosen: {result.chosen}   → {out / 'trigger.json'}, {out / 'trigger_search.png'}")


SurrogatesOpt = Annotated[Optional[Path], typer.Option(
    "--surrogates", help="Folder of trained surrogates, one sub-folder per model, reused when already trained "
                         "(default: OUT/surrogates). Share it between optimize-trigger and rank-pairs.")]


@app.command("optimize-trigger")
def optimize_trigger(
    config: Annotated[Path, typer.Argument(help="YAML config: data, attack (vector, victim, target), surrogate, "
                                                "search.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for trigger.json and trigger_search.png.")],
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override, e.g. search.steps=100.")] = None,
    surrogates: SurrogatesOpt = None,
) -> None:
    """BADSEG stages 1-2: train a surrogate, then search the trigger options (Table 20) with Gumbel-Softmax."""
    from badseg.sam.config import is_sam_config

    if is_sam_config(config):
        _search_sam(config, out, set_ or [])
        return
    from badseg.config import load_config
    from badseg.stages.auto import optimize_trigger_from_config
    from badseg.stages.trigger_search import option_label

    try:
        cfg = load_config(config, set_ or [])
        result = optimize_trigger_from_config(cfg, out, surrogates or out / "surrogates", log=console.print,
                                              progress=console.is_terminal)
    except USER_ERRORS as e:
        _fail(_message(e))
    table = Table(title=f"optimised trigger ({cfg.attack.vector} {cfg.attack.victim} → {cfg.attack.target})",
                  title_justify="left")
    for col in ("attribute", "chosen", "probability", "runner-up"):
        table.add_column(col)
    for a, options in result.space.items():
        probs = result.probabilities[a]
        order = sorted(range(len(options)), key=lambda i: -probs[i])
        second = f"{option_label(a, options[order[1]])} ({probs[order[1]]:.2f})" if len(order) > 1 else "-"
        table.add_row(a, option_label(a, result.chosen[a]), f"{probs[order[0]]:.2f}", second)
    console.print(table)
    console.print(f"placement: {result.placement}   → {out / 'trigger.json'}, {out / 'trigger_search.png'}")


@app.command("rank-pairs")
def rank_pairs(
    config: Annotated[Path, typer.Argument(help="YAML config: data, surrogate (model, split or fraction, epochs).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder: OUT/MODEL/pairs.json, OUT/MODEL/pairs.md and pair_distances.png.")],
    model: Annotated[Optional[list[str]], typer.Option(
        "--model", "-m", help="Surrogate model; repeat to compare rankings (default: the config's surrogate).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override, e.g. surrogate.fraction=0.3.")] = None,
    surrogates: SurrogatesOpt = None,
    top: Annotated[int, typer.Option(callback=_at_least(1), help="Pairs shown.")] = 20,
) -> None:
    """BADSEG stages 1 and 3: class-centre distances, the closest victim-target pairs and, for two or more
    surrogates, the agreement of their rankings (Spearman, Kendall, top-k overlap)."""
    from badseg.config import load_config
    from badseg.data import get_spec
    from badseg.stages.auto import rank_pairs_from_config
    from badseg.stages.surrogate import surrogate_model_name

    try:
        cfg = load_config(config, set_ or [])
        models = model or [surrogate_model_name(cfg)]
        rankings, agreement = rank_pairs_from_config(cfg, models, out, surrogates or out / "surrogates",
                                                     log=console.print)
    except USER_ERRORS as e:
        _fail(_message(e))
    spec = get_spec(cfg.data.name)
    for r in rankings:
        table = Table(title=f"closest class pairs ({r.model})", title_justify="left")
        for col in ("rank", "pair", "distance", "suits"):
            table.add_column(col)
        for p in r.ranking[:top]:
            table.add_row(str(p.rank), f"{spec.classes[p.a]}, {spec.classes[p.b]}", f"{p.distance:.4f}",
                          ", ".join(v.upper() for v in p.vectors))
        console.print(table)
    for row in agreement:
        overlap = ", ".join(f"top-{k}: {n}/{row['top_k_of'][k]}" for k, n in row["top_k_overlap"].items())
        console.print(f"{row['models'][0]} vs {row['models'][1]}: Spearman {row['spearman']:.4f}, "
                      f"Kendall {row['kendall']:.4f}, {overlap}")
    console.print(f"→ {out}")


@app.command()
def sweep(
    sweep_file: Annotated[Path, typer.Argument(help="YAML sweep file: a base config plus axes (see configs/paper/).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Sweep folder (re-run the same command to resume).")],
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override for every run, e.g. train.epochs=2.")] = None,
    num_cpus: Annotated[Optional[int], typer.Option(help="CPUs of the local Ray instance (default: all).")] = None,
    num_gpus: Annotated[Optional[int], typer.Option(help="GPUs of the local Ray instance (default: all).")] = None,
    local: Annotated[bool, typer.Option("--local", help="Run in this process, one run after another on all "
                                                         "cores (no Ray).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Expand and validate; list the runs, run nothing.")] = False,
    threads: Annotated[Optional[int], typer.Option(min=1, help="Torch threads per run (default: the CPUs a run asks for; "
                                                       "all cores with --local).")] = None,
    only: Annotated[Optional[list[str]], typer.Option("--only", help="Only the runs with these axis labels, e.g. "
                                                                     "attack=hba,iba (repeatable; ANDed).")] = None,
) -> None:
    """Run every setting of a sweep as Ray tasks (a cluster when RAY_ADDRESS is set); finished runs
    are skipped, failures recorded with their traceback and retried; Ctrl-C stops, a re-run resumes."""
    from badseg.config import ConfigError
    from badseg.sweep import (ExecutorError, LocalExecutor, RayExecutor, SweepInterrupted, find_run_dir, load_sweep,
                              run_sweep, select)

    try:
        spec = load_sweep(sweep_file, set_ or [])
        spec = select(spec, only) if only else spec
    except ConfigError as e:
        _fail(str(e))
    if dry_run:
        for run in spec.runs:
            found = find_run_dir(out / "runs", run.hash)
            done = found is not None and (found / "metrics.json").is_file()
            console.print(f"{run.name}{'  (finished)' if done else ''}")
        console.print(f"{len(spec.runs)} runs")
        return
    try:
        executor = LocalExecutor() if local else RayExecutor(num_cpus, num_gpus)
    except ExecutorError as e:
        _fail(str(e))
    try:
        result = run_sweep(spec, out, executor, console, threads=threads or (os.cpu_count() if local else None))
    except SweepInterrupted as e:
        console.print(f"[bold yellow]{e}[/]")
        raise typer.Exit(130) from None
    finally:
        executor.close()
    for s in result.failed:
        console.print(f"[red]{s.status}[/] {s.path.name}: {s.error} ({s.path / 'failures'})")
    console.print(f"{result.count('done')} run, {result.count('skipped')} finished before, "
                  f"{len(result.failed)} failed → {out}")
    if result.failed:
        raise typer.Exit(1)


@app.command("table")
def table_(
    sweep_dir: Annotated[Path, typer.Argument(help="A sweep folder (the --out of badseg sweep).")],
    layout: Annotated[str, typer.Option(help="Paper table: table5, table8-shape, table8-size, table9, "
                                             "table10-quantity, table10-intensity, table11, table12-ins, "
                                             "table12-con, table14-table17, table18, table23, table24.")],
    rows: Annotated[Optional[str], typer.Option(help="Row keys instead of the layout's, 'attack.vector,model.name'.")] = None,
    cols: Annotated[Optional[str], typer.Option(help="Column key instead of the layout's ('none': no columns).")] = None,
    metrics: Annotated[Optional[str], typer.Option(help="Metrics instead of the layout's, 'asr,cba'.")] = None,
    sweep: Annotated[Optional[list[str]], typer.Option("--sweep", help="Only the runs of these sweep files (stems, "
                     "repeatable; default: the files named like the layout, e.g. table8-size and table8-size-b2b; "
                     "'all': every run in the folder).")] = None,
    where: Annotated[Optional[list[str]], typer.Option("--where", help="Only the runs with this axis label or config "
                     "value, e.g. attack.vector=o2b (repeatable; ANDed); the files are then named LAYOUT-VALUE.")] = None,
) -> None:
    """Finished runs' metrics.json as a table shaped like the paper's (mean ± std over seeds):
    SWEEP_DIR/tables/LAYOUT.{md,csv}, and LAYOUT.png where the paper shows a plot. A folder that
    several sweep files wrote into gives each table the runs of its own file."""
    from badseg.data.io import atomic_write_bytes
    from badseg.report.figures import save_series_plot
    from badseg.report.tables import (LAYOUTS, TableError, build_table, custom_layout, load_records, plot_points,
                                      select_records, sweeps_for)

    if layout not in LAYOUTS:
        _fail(f"unknown layout {layout!r}; valid: {', '.join(LAYOUTS)}")
    lay = custom_layout(LAYOUTS[layout], rows.split(",") if rows else None, cols,
                        metrics.split(",") if metrics else None)
    sweeps = None if sweep == ["all"] else (sweep or sweeps_for(sweep_dir, layout) or None)
    if sweeps:
        console.print(f"runs of {', '.join(sweeps)}")
    try:
        table = build_table(select_records(load_records(sweep_dir, sweeps), where or []), lay)
    except TableError as e:
        _fail(str(e))
    dest = sweep_dir / "tables"
    stem = "-".join([layout, *(re.sub(r"[^\w.]+", "_", w.partition("=")[2]) for w in where or [])])
    md = table.markdown()
    atomic_write_bytes(dest / f"{stem}.md", md.encode())
    atomic_write_bytes(dest / f"{stem}.csv", table.csv().encode())
    console.print(md, markup=False)
    written = [dest / f"{stem}.md", dest / f"{stem}.csv"]
    if lay.plot is not None:
        title = lay.title + (f" ({', '.join(where)})" if where else "")
        written.append(save_series_plot(plot_points(table), dest / f"{stem}.png", lay.plot.x_label,
                                        lay.plot.y_label, title))
    console.print("wrote " + ", ".join(str(p) for p in written))


@app.command("eval")
def eval_(
    run_dir: Annotated[Path, typer.Argument(help="A finished run folder (badseg run / sweep).")],
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Test-side change, e.g. attack.test_band=[60,90].")] = None,
    breakdown: Annotated[bool, typer.Option("--breakdown", help="Also where the victim pixels flip: on the instance "
                                            "carrying the trigger, on the other victim instances of the triggered "
                                            "images, on their clean originals.")] = False,
) -> None:
    """Re-evaluate a run's trained model on another poisoned test set → `RUN_DIR/evals/OVERRIDES.json`."""
    from badseg.reevaluate import EVALS, eval_name, reevaluate

    try:
        metrics = reevaluate(run_dir, set_ or [], progress=console.is_terminal, log=console.print,
                             breakdown=breakdown)
    except USER_ERRORS as e:
        _fail(_message(e))
    metrics["clean_model_cba"] = None
    _print_metrics(metrics, run_dir)
    stem = run_dir / EVALS / eval_name(set_ or [])
    if breakdown:
        from badseg.data import get_spec

        classes = get_spec(metrics["dataset"]).classes
        table = Table(title="victim pixels predicted as the target", title_justify="left")
        for col in ("where", "flipped", "victim pixels", "predicted as"):
            table.add_column(col, justify="right" if col in ("flipped", "victim pixels") else "left")
        names = {"carrier": "instance carrying the trigger", "other": "other instances, triggered images",
                 "clean": "clean originals"}
        for pool, row in metrics["flip_breakdown"].items():
            shares = ", ".join(f"{classes[int(c)]} {v:.3f}" for c, v in list(row["predicted_as"].items())[:3])
            table.add_row(names[pool], "n/a" if row["flipped"] is None else f"{row['flipped']:.3f}", str(row["pixels"]),
                          shares)
        console.print(table)
        by_area = Table(title="victim pixels predicted as the target, by instance area at the input",
                        title_justify="left")
        for col in ("instance area (px)", "instances", "victim pixels", "flipped"):
            by_area.add_column(col, justify="right")
        for row in metrics["flip_by_area"]:
            lo, hi = row["area_px"]
            by_area.add_row(f"{lo}–{hi}" if hi is not None else f"≥ {lo}", str(row["instances"]), str(row["pixels"]),
                            f"{row['flipped']:.3f}")
        console.print(by_area)
        if metrics["flip_by_area"]:
            from badseg.report.figures import save_area_breakdown

            figure = save_area_breakdown(metrics["flip_by_area"], stem.with_name(f"{stem.name}-by-area.png"),
                                         f"{run_dir.name}: ASR {metrics['asr']:.3f}")
            console.print(f"figure → {figure}")
    console.print(f"{metrics['n_poisoned_test']} poisoned test images → {stem.with_name(stem.name + '.json')}")
