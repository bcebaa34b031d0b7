"""Average the weights of CLIP models of one architecture (a uniform model soup, Wortsman et al. 2022).

    python training/recipes/soup.py assets/builtin/clip runs/lit-v2/final --out runs/soup/final

Models trained from the same initialisation (same config and seed) on different data keep a shared basin when
their towers stay mostly locked, so the average keeps much of what each learned; it needs no training.
"""

from __future__ import annotations

import argparse
import sys

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="model folders (or names) of the same architecture")
    parser.add_argument("--weights", default=None, help="comma-separated mixing weights (default: uniform)")
    parser.add_argument("--out", required=True, help="folder for the averaged model")
    args = parser.parse_args()
    from multimodal.models import from_pretrained

    models = [from_pretrained(m) for m in args.models]
    weights = [float(w) for w in args.weights.split(",")] if args.weights else [1.0] * len(models)
    if len(weights) != len(models) or sum(weights) <= 0:
        parser.error(f"{len(weights)} weights for {len(models)} models")
    configs = {repr({k: v for k, v in m.config.items() if not k.startswith("_")}) for m in models}
    if len(configs) != 1:
        sys.exit("soup.py: the models' configs differ; only one architecture can be averaged")
    states = [m.state_dict() for m in models]
    total = sum(weights)
    soup = {k: sum(w * s[k].float() for w, s in zip(weights, states)) / total if states[0][k].is_floating_point()
            else states[0][k] for k in states[0]}
    models[0].load_state_dict(soup)
    models[0].save_pretrained(args.out)
    print(f"wrote {args.out}: {len(models)} models, weights {weights}", file=sys.stderr)


if __name__ == "__main__":
    with torch.no_grad():
        main()
