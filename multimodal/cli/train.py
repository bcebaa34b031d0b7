"""`multimodal train clip|finetune|decoder|prior`."""

from __future__ import annotations

import json
import sys

from multimodal.cli import add_subcommand

TRAIN_HELP = """\
Train from a YAML recipe plus key=value overrides (dotted keys reach into sections), e.g.
  multimodal train clip --config tiny-ci steps=200 data.batch_size=64 optim.lr=5e-4
A recipe is a YAML file or the name of one in training/configs/ (tiny-ci, lit-default, scratch-small,
vit-b32-multinode, ...). The resolved config is written to RUN_DIR/config.yaml; checkpoints go to
RUN_DIR/checkpoints (atomic, the last N kept), logs to RUN_DIR/metrics.jsonl and RUN_DIR/tb
(TensorBoard), curves to RUN_DIR/curves.png and the trained model to RUN_DIR/final.

Resume a killed run exactly (same step, same data position) with --resume latest.

`finetune` fine-tunes a trained model (finetune.base) on a labelled domain set (finetune.data: an
ImageFolder, CSV/JSONL or shards) contrastively against class-name prompts (FLYP), then reports
zero-shot accuracy before/after on the domain's held-out split and on reference sets, for each
WiSE-FT alpha (finetune.wise_alphas); --wise-alpha picks the weights that are saved.
Distributed data-parallel: torchrun --nproc_per_node N -m multimodal train clip --config ..."""


def register(sub) -> None:
    p = add_subcommand(sub, "train", "train the CLIP pair, fine-tune it, or train the decoder/prior", TRAIN_HELP)
    p.add_argument("what", choices=["clip", "finetune", "decoder", "prior"], help="what to train")
    p.add_argument("--config", required=True, help="recipe YAML file or recipe name")
    p.add_argument("--resume", default=None, help="'latest' (the run's newest checkpoint), 'auto' (the newest if "
                   "there is one, else start fresh) or a checkpoint path")
    p.add_argument("--wise-alpha", type=float, default=None,
                   help="finetune: keep (1-a)*base + a*fine-tuned weights (WiSE-FT); default 1 = fine-tuned only")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. steps=200 optim.lr=5e-4")
    p.set_defaults(func=run)


def run(args) -> int:
    from multimodal_train.config import load_config

    cfg = load_config(args.config, args.overrides)
    if args.what == "clip":
        from multimodal_train.clip import train

        metrics = train(cfg, resume=args.resume)
    elif args.what == "finetune":
        from multimodal_train.finetune import finetune

        finetune(cfg, wise_alpha=args.wise_alpha)
        metrics = None
    elif args.what == "decoder":
        from multimodal_train.decoder import train

        metrics = train(cfg, resume=args.resume)
    else:
        from multimodal_train.prior import train

        metrics = train(cfg, resume=args.resume)
    if metrics:
        print(json.dumps(metrics, indent=2), file=sys.stderr)
    return 0
