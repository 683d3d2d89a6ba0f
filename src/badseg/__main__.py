"""``python -m badseg`` (e.g. ``torchrun --nproc-per-node 2 -m badseg run CONFIG --out DIR``)."""

from badseg.cli import app

app(prog_name="badseg")
