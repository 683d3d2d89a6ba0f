"""How many CamVid training images hold a car meeting each CON condition predicate (no training).

CON poisons only images with a car meeting the condition (``ConditionedInstances``), so a
condition needs enough applicable images to be learnable; CamVid has few red cars. Cars are
the connected components of the car class of at least 64 px (the CON selector's ``min_area``),
at the files' native resolution. Writes ``benchmarks/results/camvid_con_conditions.json``.

    python benchmarks/camvid_con_conditions.py [--root ../shared/data/camvid] [--split train]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from badseg.data import load_dataset
from badseg.data.instances import Condition, object_features, object_instances
from badseg.data.io import write_json

ROOT = Path(__file__).resolve().parents[1]
PREDICATES = ("red", "white", "dark", "white&width>=40", "dark&width>=40", "white&near", "dark&near",
              "white&left", "white&right", "width>=60", "white&width>=60", "red&width>=20")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=str(ROOT.parent / "shared" / "data" / "camvid"))
    ap.add_argument("--split", default="train")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "camvid_con_conditions.json"))
    args = ap.parse_args()
    data = load_dataset("camvid", root=args.root, split=args.split)
    car = data.spec.class_id("car")
    conditions = [Condition(p) for p in PREDICATES]
    images = {p: 0 for p in PREDICATES}
    objects = {p: 0 for p in PREDICATES}
    n_cars, with_car = 0, 0
    for i in range(len(data)):
        sample = data[i]
        feats = [object_features(sample.image, o.mask)
                 for o in object_instances(sample.label, sample.instances, data.spec, [car], 64)]
        n_cars += len(feats)
        with_car += bool(feats)
        for c in conditions:
            hits = sum(c.holds(f) for f in feats)
            objects[c.text] += hits
            images[c.text] += hits > 0
    result = {"split": args.split, "n_images": len(data), "images_with_car": with_car, "cars": n_cars,
              "predicates": {p: {"images": images[p], "cars": objects[p]} for p in PREDICATES}}
    write_json(Path(args.out), result)
    print(f"{args.split}: {len(data)} images, {with_car} with a car of >= 64 px, {n_cars} cars")
    print("| condition | applicable images | cars meeting it |\n|---|---|---|")
    for p in PREDICATES:
        print(f"| `{p}` | {images[p]} | {objects[p]} |")


if __name__ == "__main__":
    main()
