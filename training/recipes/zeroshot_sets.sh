# The twelve held-out sets every CLIP is judged on (sourced by reproduce.sh and eval_clip.sh).
sets=(--data emoji=data/corpus/emoji/eval --data twemoji=data/corpus/twemoji/eval
      --data openmoji=data/corpus/openmoji/eval --data emojione=data/corpus/emojione/eval
      --data clip-art=data/corpus/openclipart/eval --data tuxpaint=data/corpus/tuxpaint/eval
      --data icons=data/corpus/icons/eval --data emojione-v1=data/corpus/emojione-v1/eval
      --data noto-v1=data/corpus/noto-v1/eval --data fxemoji=data/corpus/fxemoji/eval
      --data streamline=data/corpus/streamline-emojis/eval --data skimage=data/eval/skimage)
