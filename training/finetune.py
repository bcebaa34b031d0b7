"""Fine-tuning on a domain image set: FLYP (contrastive against class-name prompts) + WiSE-FT.

    multimodal train finetune --config finetune-fashion [--wise-alpha 0.5]

1. The domain data (ImageFolder, CSV/JSONL or shards with labels) is written to shards in the run
   folder, unless it already is shards; a held-out split is made by a stable hash of the key when
   none is given.
2. FLYP (Goyal et al. 2022): the pretraining loss, unchanged, on (image, "a photo of a {class}") pairs.
3. WiSE-FT (Wortsman et al. 2022): theta(alpha) = (1 - alpha) * theta_base + alpha * theta_finetuned.
4. A report of zero-shot accuracy before and after, and for each alpha, on the domain's held-out split
   and on a reference set from the pretraining corpus, so the gain and the cost are both visible.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import torch

from multimodal.errors import UsageError
from multimodal_train.config import FinetuneSection, TrainConfig


def interpolate(base: dict, tuned: dict, alpha: float) -> dict:
    """WiSE-FT: float tensors are mixed, integer buffers (e.g. BN counters) come from the fine-tuned model."""
    return {k: (1 - alpha) * base[k] + alpha * v if torch.is_floating_point(v) else v for k, v in tuned.items()}


def prepare_domain_shards(section: FinetuneSection, run_dir: Path) -> tuple[str, str]:
    """(train spec, eval spec) as shards; converts an ImageFolder/CSV/JSONL once into run_dir/data."""
    from multimodal.data.sources import detect_kind, load_source
    from multimodal.data.split import split_of
    from multimodal.data.writer import write_shards

    source = Path(section.data)
    if not section.data:
        raise UsageError("finetune.data is empty: give an ImageFolder, a CSV/JSONL file or labelled shards")
    kind = detect_kind(section.data)
    if kind == "shards":
        if not section.eval_data:
            raise UsageError("finetune.data is shards: also give finetune.eval_data (a held-out shard set)")
        return section.data, section.eval_data
    items = load_source(source, kind)
    if not any(item.labels for item in items):
        raise UsageError(f"{source}: fine-tuning needs class labels (an ImageFolder, or a CSV/JSONL --label-col)")
    for item in items:  # FLYP trains on class-name prompts: the caption is the class name, templated at train time
        item.caption = item.labels[0].replace("_", " ")
        item.labels = [item.caption]
    train_items = [i for i in items if section.eval_data or split_of(i.key) == "train"]
    out = run_dir / "data"
    write_shards(train_items, out / "train", progress=False)
    if section.eval_data:
        return str(out / "train"), section.eval_data
    write_shards([i for i in items if split_of(i.key) == "eval"], out / "eval", progress=False)
    return str(out / "train"), str(out / "eval")


def evaluate_sets(model, sets: dict[str, str], templates, batch_size: int, autocast: bool,
                  max_samples: int = 0) -> dict:
    from multimodal.evaluation import zeroshot_metrics

    results = {}
    for name, spec in sets.items():
        m = zeroshot_metrics(model, spec, templates=templates, batch_size=batch_size, autocast=autocast,
                             max_samples=max_samples or None)
        results[name] = {"top1": m["top1"], "top5": m["top5"], "num_samples": m["num_samples"],
                         "per_class_recall": m["per_class_recall"]}
    return results


def format_report(report: dict) -> str:
    sets = list(report["alphas"][0]["results"])
    header = f"{'alpha':>6} " + " ".join(f"{s + ' top1':>18} {s + ' top5':>18}" for s in sets)
    lines = [header]
    for row in report["alphas"]:
        cells = " ".join(f"{row['results'][s]['top1']:>18.3f} {row['results'][s]['top5']:>18.3f}" for s in sets)
        lines.append(f"{row['alpha']:>6.2f} {cells}")
    return "\n".join(lines)


def finetune(cfg: TrainConfig, wise_alpha: float | None = None) -> dict:
    """FLYP on the domain set, then the WiSE-FT report; the chosen weights go to RUN_DIR/final (rank 0)."""
    from multimodal.distributed import session

    with session(cfg.device) as info:
        return _finetune(copy.deepcopy(cfg), info, wise_alpha)


def _finetune(cfg: TrainConfig, info, wise_alpha: float | None) -> dict:
    from multimodal.models import from_pretrained
    from multimodal.precision import bf16_is_fast
    from multimodal_train.clip import fit

    section = cfg.finetune
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    train_spec, eval_spec = prepare_domain_shards(section, run_dir)
    cfg.data.train = train_spec
    cfg.data.caption_templates, cfg.data.caption_template_p = list(section.templates), 1.0
    cfg.eval.zeroshot, cfg.eval.retrieval = {"domain": eval_spec}, {}
    base = from_pretrained(section.base)
    base_state = {k: v.clone() for k, v in base.model.state_dict().items()}
    print(f"fine-tuning {section.base} ({base.config['name']}) on {section.data}", file=sys.stderr)

    fit(cfg, info, model=base)  # FLYP: the pretraining loss on templated class names
    if not info.is_main:
        return {}  # under torchrun, rank 0 alone evaluates and reports
    tuned_state = {k: v.clone() for k, v in base.model.state_dict().items()}

    sets = {"domain": eval_spec, **section.reference}
    alphas = sorted(set(section.wise_alphas) | ({wise_alpha} if wise_alpha is not None else set()))
    bf16 = cfg.precision == "bf16" and bf16_is_fast(base.device)
    rows = []
    for alpha in alphas:
        base.model.load_state_dict(interpolate(base_state, tuned_state, alpha))
        base.eval()
        results = evaluate_sets(base, sets, section.templates, cfg.eval.batch_size, bf16, section.max_eval_samples)
        rows.append({"alpha": alpha, "results": results})
        print(f"alpha={alpha:.2f}: " + ", ".join(f"{k} top1={v['top1']:.3f}" for k, v in results.items()),
              file=sys.stderr)
    report = {"base": section.base, "data": section.data, "eval_data": eval_spec, "templates": section.templates,
              "steps": cfg.steps, "alphas": rows}
    (run_dir / "finetune_report.json").write_text(json.dumps(report, indent=2))
    print(format_report(report))
    chosen = 1.0 if wise_alpha is None else wise_alpha
    base.model.load_state_dict(interpolate(base_state, tuned_state, chosen))
    base.register_to_config(description=f"{base.config['description']} Fine-tuned (FLYP) on {section.data}, "
                                        f"WiSE-FT alpha={chosen}.")
    base.save_pretrained(run_dir / "final")
    return report
