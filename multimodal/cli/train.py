"""`multimodal train clip|finetune|decoder|prior`."""

from __future__ import annotations

from multimodal.cli import add_subcommand, not_built

TRAIN_HELP = """\
Train from a YAML recipe plus key=value overrides, e.g.
  multimodal train clip --config tiny-ci steps=200 batch_size=64
A recipe is a file or the name of one in training/configs/. The resolved config is written into the
run folder. Launch several processes with torchrun for distributed data-parallel training."""


def register(sub) -> None:
    p = add_subcommand(sub, "train", "train the CLIP pair, fine-tune it, or train the decoder/prior", TRAIN_HELP)
    p.add_argument("what", choices=["clip", "finetune", "decoder", "prior"])
    p.add_argument("--config", required=True, help="recipe YAML file or recipe name")
    p.add_argument("--resume", default=None, help="'latest' or a checkpoint path")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.set_defaults(func=lambda args: not_built(f"`multimodal train {args.what}`"))
