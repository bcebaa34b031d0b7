#!/usr/bin/env bash
# Judge one CLIP as the candidates for the shipped one are judged: zero-shot top-1 on the twelve held-out sets
# (fp32, as every candidate) into runs/eval/zeroshot-NAME.json, and photo_check.py's README examples.
#   bash training/recipes/eval_clip.sh MODEL NAME      e.g. bash training/recipes/eval_clip.sh builtin builtin
# then: python training/recipes/compare_zeroshot.py runs/eval/zeroshot-builtin.json runs/eval/zeroshot-NAME.json
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ $# -ne 2 ]; then sed -n 2,5p "$0" >&2; exit 2; fi
source training/recipes/zeroshot_sets.sh
mkdir -p runs/eval
python3 -m multimodal eval zeroshot --model "$1" "${sets[@]}" --out "runs/eval/zeroshot-$2.json" 2>&1 | grep -v "it/s\]"
python3 training/recipes/photo_check.py "$1"
