"""Average the weights of models of one architecture (a uniform model soup, Wortsman et al. 2022).

    python training/recipes/soup.py assets/builtin/clip runs/lit-v2/final --out runs/soup/final
    python training/recipes/soup.py runs/lit-v5/final runs/lit-v5/checkpoints/step-00000300.ckpt --out ...
    python training/recipes/soup.py runs/decoder-v5-aligned/final/decoder runs/decoder-v6/final/decoder --out ...

A diffusers model folder (a decoder: config.json + diffusion_pytorch_model.safetensors) is averaged file by file;
its configs must agree.

A CLIP trainer's checkpoint (.ckpt) counts as a model: it is rebuilt from the config it holds. CLIPs may differ in
how much of each tower they trained (`unlocked_groups`/`unlocked_layers`) if the first trained at least as much as
every other: the soup is saved with the first one's config, which keeps every layer any ingredient changed.

Models trained from the same initialisation (same config and seed) on different data keep a shared basin when
their towers stay mostly locked, so the average keeps much of what each learned; it needs no training.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="model folders, names or CLIP training checkpoints (.ckpt) of the "
                        "same architecture")
    parser.add_argument("--weights", default=None, help="comma-separated mixing weights (default: uniform)")
    parser.add_argument("--out", required=True, help="folder for the averaged model")
    args = parser.parse_args()
    weights = [float(w) for w in args.weights.split(",")] if args.weights else [1.0] * len(args.models)
    if len(weights) != len(args.models) or sum(weights) <= 0:
        parser.error(f"{len(weights)} weights for {len(args.models)} models")
    if is_diffusers_folder(args.models[0]):
        soup_diffusers_folders(args.models, weights, Path(args.out))
    else:
        models = [load(m) for m in args.models]
        check_clip_specs([m.spec for m in models])
        models[0].load_state_dict(average([m.state_dict() for m in models], weights))
        models[0].save_pretrained(args.out)
    print(f"wrote {args.out}: {len(args.models)} models, weights {weights}", file=sys.stderr)


UNLOCKED = {"image": "unlocked_groups", "text": "unlocked_layers"}
HOW_MUCH_TRAINED = ("lock", *UNLOCKED.values())


def check_clip_specs(specs: list) -> None:
    """One architecture (the config each model was built from, how much it trained aside), and the first model
    trains at least as much of each tower as any other (its save keeps only the layers it trains)."""
    def architecture(spec) -> dict:
        towers = {name: {k: v for k, v in tower.items() if k not in HOW_MUCH_TRAINED}
                  for name, tower in spec.towers.items()}
        return {**spec.to_dict(), "towers": towers}

    if any(architecture(s) != architecture(specs[0]) for s in specs[1:]):
        sys.exit("soup.py: the models' configs differ; only one architecture can be averaged")
    for name, key in UNLOCKED.items():
        counts = [trained_amount(s.towers.get(name, {}), key) for s in specs]
        if max(counts) > counts[0]:
            sys.exit(f"soup.py: the {name} tower's {key} are {counts} (inf: not locked); put a model that trains the "
                     "most of it first")


def trained_amount(tower: dict, key: str) -> float:
    """How many layer groups of a tower train: all of them (inf) unless it is locked."""
    return float(tower.get(key, 0)) if tower.get("lock") else float("inf")


def average(states: list[dict], weights: list[float]) -> dict:
    total = sum(weights)
    return {k: sum(w * s[k].float() for w, s in zip(weights, states)) / total if states[0][k].is_floating_point()
            else states[0][k] for k in states[0]}


def is_diffusers_folder(name: str) -> bool:
    import json

    config = Path(name) / "config.json"
    return config.is_file() and json.loads(config.read_text()).get("_class_name") not in (None, "CLIPModel")


def soup_diffusers_folders(folders: list[str], weights: list[float], out: Path) -> None:
    """Average the weights file of diffusers folders with one config (the first folder's config is kept)."""
    import json
    import shutil

    from diffusers.utils import SAFETENSORS_WEIGHTS_NAME
    from safetensors.torch import load_file

    from multimodal.models.io import save_safetensors

    if not all(is_diffusers_folder(f) for f in folders):
        sys.exit("soup.py: every ingredient must be a diffusers model folder like the first")
    configs = [{k: v for k, v in json.loads((Path(f) / "config.json").read_text()).items() if k != "_name_or_path"}
               for f in folders]
    if any(c != configs[0] for c in configs[1:]):
        sys.exit("soup.py: the models' configs differ; only one architecture can be averaged")
    states = [load_file(str(Path(f) / SAFETENSORS_WEIGHTS_NAME)) for f in folders]
    dtype = next(iter(states[0].values())).dtype
    out.mkdir(parents=True, exist_ok=True)
    soup = {k: v.to(dtype) if v.is_floating_point() else v for k, v in average(states, weights).items()}
    save_safetensors(soup, out / SAFETENSORS_WEIGHTS_NAME)
    shutil.copy(Path(folders[0]) / "config.json", out / "config.json")


def load(name: str):
    """A saved model folder or name, or a `multimodal train clip` checkpoint rebuilt from the config it holds."""
    from multimodal.models import from_pretrained

    if not name.endswith(".ckpt"):
        return from_pretrained(name)
    from multimodal_train.checkpoint import load_checkpoint
    from multimodal_train.clip import build_model
    from multimodal_train.config import TrainConfig, from_dict

    state = load_checkpoint(Path(name))
    cfg = from_dict(TrainConfig, state["config"])
    cfg.model.pretrained_towers = False  # every weight comes from the checkpoint
    model = build_model(cfg)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError:
        sys.exit(f"soup.py: {name} is not a `multimodal train clip` checkpoint of {cfg.model.init or cfg.model.name}")
    return model.eval()


if __name__ == "__main__":
    with torch.no_grad():
        main()
