#!/usr/bin/env bash
# The commands that decoders v4 to v12 are judged by, for one pipeline folder (2-5 min on 2 cores):
#   [SEEDS=12] [JUDGE=runs/soup-v10/final] [BF16=1] [CUTOFF=0.5] [STRENGTH=1] [PROMPTS=189] bash training/recipes/eval_pipeline.sh PIPELINE OUT_DIR
# the sample grid, the everyday score over $SEEDS seeds (4 unless set; decoder v10's rule asks 12), the variations,
# their score on the scikit-image photos (decoder v12's rule; skimage_eval.py writes them), and eval generation on
# $PROMPTS held-out emoji captions (64 unless set; 189 is all of them, for compare_pipelines.py --paired) with
# reconstruction, condition sensitivity and (for a retrieval decoder) neighbour use.
# JUDGE (a CLIP) scores the everyday images, the variations and the generation metrics; unset, the shipped tagger
# scores the everyday images and the variations, and the pipeline's own CLIP the metrics. BF16=1 samples under
# bfloat16 autocast (pipe.enable_bf16()); the judges and the sensitivity diagnostics stay float32. CUTOFF sets the
# share of the steps that are guided (pipe.guidance_cutoff; unset: the pipeline's default). STRENGTH sets how much of the
# schedule a variation's photo is noised to (image_variations' strength; unset: its default; 1: the embedding alone).
set -euo pipefail
P=$1; OUT=$2; SEEDS=${SEEDS:-4}; PROMPTS=${PROMPTS:-64}; JUDGE=${JUDGE:-}; BF16=${BF16:+--bf16}
CUTOFF=${CUTOFF:+--guidance-cutoff $CUTOFF}; STRENGTH=${STRENGTH:+--variation-strength $STRENGTH}; mkdir -p "$OUT"
python training/recipes/sample_grid.py --pipeline "$P" --out "$OUT/grid.png" --everyday-out "$OUT/everyday.png" \
    --variations-out "$OUT/variations.png" \
    --variation-photos data/eval/skimage --seeds "$SEEDS" ${JUDGE:+--judge "$JUDGE"} $BF16 $CUTOFF $STRENGTH 2>&1 | grep -v "it/s\]" | tee "$OUT/grid.txt"
multimodal eval generation --model "$P" --data emoji=data/corpus/emoji/eval --num-prompts "$PROMPTS" --steps 20 \
    --guidance 3,8 ${JUDGE:+--judge "$JUDGE"} $BF16 $CUTOFF --reconstruction --sensitivity --grid-dir "$OUT/grids" --out "$OUT/generation.json" 2>&1 | grep -v "it/s\]" | tail -40
