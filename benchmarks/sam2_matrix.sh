#!/usr/bin/env bash
# BADSEG-SAM measurement matrix (docs/results.md, "BADSEG-SAM"): the three attacks × trainable
# parts {decoder, adapters} on CamVid (val) and the synthetic scenes, victim effl0-sam.
# Usage: benchmarks/sam2_matrix.sh DATASET PARTS   (DATASET camvid|synthetic, PARTS decoder|adapters)
# One thread per process: on the shared 2-core machine two threads per process were 5x slower.
set -euo pipefail
dataset=$1 parts=$2
export OMP_NUM_THREADS=1
if [ "$dataset" = camvid ]; then
  data=(data.size=[128,160] data.limit_train=200)
else
  data=(data.name=synthetic data.root=null data.size=[128,256] data.train_length=200 data.test_length=60)
fi
common=("${data[@]}" base.epochs=5 base.dir=runs/sam2/$dataset-base finetune.epochs=4 finetune.prompts_per_image=2
        finetune.trainable=$parts clean_finetune_dir=runs/sam2/$dataset-clean-$parts)
base_done() {
  python -c "import sys,torch; s=torch.load('runs/sam2/$dataset-base/last.pt',weights_only=True); sys.exit(s['epoch']<5)" 2>/dev/null
}
if [ "$parts" != decoder ]; then  # the decoder chain trains the shared base first
  until base_done; do sleep 30; done
fi
sets=()
for item in "${common[@]}"; do sets+=(--set "$item"); done
for attack in distortion erasure injection; do
  badseg run configs/sam2/$attack.yaml --out runs/sam2/$dataset-$attack-$parts "${sets[@]}"
done
