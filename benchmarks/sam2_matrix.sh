#!/usr/bin/env bash
# BADSEG-SAM measurement matrix (docs/results.md, "BADSEG-SAM"): the three attacks × trainable
# parts on CamVid (val) or the synthetic scenes, victim effl0-sam, run one after another.
# Usage: benchmarks/sam2_matrix.sh DATASET [PARTS...]   (DATASET camvid|synthetic; PARTS default: decoder adapters)
# The first run trains the shared base (base.dir, ~10 min on one thread), each attack then
# fine-tunes it; the clean fine-tuned reference is shared per PARTS (clean_finetune_dir).
# Environment: RUNS (output root, default runs/sam2), BASE_DIR (the shared base's folder, default
# $RUNS/DATASET-base), FT_EPOCHS (fine-tuning epochs, default 4), PYTHON.
# One thread per process: on the shared 2-core machine two threads per process were 5x slower.
# The decoder is narrower than SAM2's (128-d, MLP 512 instead of 256 / 2048) for CPU speed.
set -euo pipefail
dataset=$1
shift
parts_list=("$@")
[ $# -eq 0 ] && parts_list=(decoder adapters)
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
python=${PYTHON:-python}
root=${RUNS:-runs/sam2}
base_dir=${BASE_DIR:-$root/$dataset-base}
ft_epochs=${FT_EPOCHS:-4}
if [ "$dataset" = camvid ]; then
  data=(data.size=[128,160])
else
  data=(data.name=synthetic data.root=null data.size=[128,256] data.train_length=240 data.test_length=60)
fi
for parts in "${parts_list[@]}"; do
  sets=()
  for item in "${data[@]}" victim.embed_dim=128 victim.decoder_mlp_dim=512 base.epochs=40 base.dir=$base_dir \
              finetune.epochs=$ft_epochs finetune.prompts_per_image=4 finetune.trainable=$parts \
              clean_finetune_dir=$root/$dataset-clean-$parts; do
    sets+=(--set "$item")
  done
  for attack in distortion erasure injection; do
    "$python" -m badseg run configs/sam2/$attack.yaml --out $root/$dataset-$attack-$parts "${sets[@]}"
  done
done
