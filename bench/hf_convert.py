"""Convert an open_clip ViT CLIP (as built by multimodal) to a transformers `CLIPModel` + tokenizer + image
processor, all offline, so that the transformers pipeline runs on the very same weights in the benchmark."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import torch


def _block(prefix_src: str, prefix_dst: str, sd: dict, out: dict) -> None:
    q, k, v = sd[f"{prefix_src}.attn.in_proj_weight"].chunk(3)
    qb, kb, vb = sd[f"{prefix_src}.attn.in_proj_bias"].chunk(3)
    out.update({
        f"{prefix_dst}.self_attn.q_proj.weight": q, f"{prefix_dst}.self_attn.q_proj.bias": qb,
        f"{prefix_dst}.self_attn.k_proj.weight": k, f"{prefix_dst}.self_attn.k_proj.bias": kb,
        f"{prefix_dst}.self_attn.v_proj.weight": v, f"{prefix_dst}.self_attn.v_proj.bias": vb,
        f"{prefix_dst}.self_attn.out_proj.weight": sd[f"{prefix_src}.attn.out_proj.weight"],
        f"{prefix_dst}.self_attn.out_proj.bias": sd[f"{prefix_src}.attn.out_proj.bias"],
        f"{prefix_dst}.layer_norm1.weight": sd[f"{prefix_src}.ln_1.weight"],
        f"{prefix_dst}.layer_norm1.bias": sd[f"{prefix_src}.ln_1.bias"],
        f"{prefix_dst}.layer_norm2.weight": sd[f"{prefix_src}.ln_2.weight"],
        f"{prefix_dst}.layer_norm2.bias": sd[f"{prefix_src}.ln_2.bias"],
        f"{prefix_dst}.mlp.fc1.weight": sd[f"{prefix_src}.mlp.c_fc.weight"],
        f"{prefix_dst}.mlp.fc1.bias": sd[f"{prefix_src}.mlp.c_fc.bias"],
        f"{prefix_dst}.mlp.fc2.weight": sd[f"{prefix_src}.mlp.c_proj.weight"],
        f"{prefix_dst}.mlp.fc2.bias": sd[f"{prefix_src}.mlp.c_proj.bias"],
    })


def convert(clip, out_dir: Path):
    """clip: a multimodal CLIPModel with an open_clip `CLIP` (ViT + text transformer). Writes and returns
    (transformers CLIPModel, CLIPTokenizer, CLIPImageProcessor)."""
    import open_clip
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    cfg = clip.spec.model_cfg
    v, t = cfg["vision_cfg"], cfg["text_cfg"]
    sd = clip.model.state_dict()
    config = CLIPConfig(
        projection_dim=cfg["embed_dim"], logit_scale_init_value=float(sd["logit_scale"]),
        vision_config={"hidden_size": v["width"], "intermediate_size": v["width"] * 4,
                       "num_hidden_layers": v["layers"], "num_attention_heads": v["width"] // v.get("head_width", 64),
                       "image_size": v["image_size"], "patch_size": v["patch_size"], "hidden_act": "gelu",
                       "layer_norm_eps": 1e-5},
        text_config={"hidden_size": t["width"], "intermediate_size": t["width"] * 4, "num_hidden_layers": t["layers"],
                     "num_attention_heads": t["heads"], "max_position_embeddings": t["context_length"],
                     "vocab_size": t["vocab_size"], "hidden_act": "gelu", "layer_norm_eps": 1e-5,
                     "eos_token_id": 49407, "bos_token_id": 49406, "pad_token_id": 0})
    out = {"vision_model.embeddings.patch_embedding.weight": sd["visual.conv1.weight"],
           "vision_model.embeddings.class_embedding": sd["visual.class_embedding"],
           "vision_model.embeddings.position_embedding.weight": sd["visual.positional_embedding"],
           "vision_model.pre_layrnorm.weight": sd["visual.ln_pre.weight"],
           "vision_model.pre_layrnorm.bias": sd["visual.ln_pre.bias"],
           "vision_model.post_layernorm.weight": sd["visual.ln_post.weight"],
           "vision_model.post_layernorm.bias": sd["visual.ln_post.bias"],
           "visual_projection.weight": sd["visual.proj"].T.contiguous(),
           "text_model.embeddings.token_embedding.weight": sd["token_embedding.weight"],
           "text_model.embeddings.position_embedding.weight": sd["positional_embedding"],
           "text_model.final_layer_norm.weight": sd["ln_final.weight"],
           "text_model.final_layer_norm.bias": sd["ln_final.bias"],
           "text_projection.weight": sd["text_projection"].T.contiguous(), "logit_scale": sd["logit_scale"]}
    for i in range(v["layers"]):
        _block(f"visual.transformer.resblocks.{i}", f"vision_model.encoder.layers.{i}", sd, out)
    for i in range(t["layers"]):
        _block(f"transformer.resblocks.{i}", f"text_model.encoder.layers.{i}", sd, out)
    model = CLIPModel(config)
    missing, unexpected = model.load_state_dict(out, strict=False)
    missing = [k for k in missing if "position_ids" not in k]
    if missing or unexpected:
        raise RuntimeError(f"conversion incomplete: missing {missing[:5]}, unexpected {unexpected[:5]}")

    # the tokenizer: open_clip's own BPE vocabulary, written in the files CLIPTokenizer reads
    out_dir.mkdir(parents=True, exist_ok=True)
    simple = open_clip.SimpleTokenizer()
    special = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}  # HF's names for them
    (out_dir / "vocab.json").write_text(json.dumps({special.get(k, k): v for k, v in simple.encoder.items()}))
    merges_path = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    merges = gzip.open(merges_path).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tokenizer = CLIPTokenizer(str(out_dir / "vocab.json"), str(out_dir / "merges.txt"),
                              model_max_length=t["context_length"], pad_token="!")
    pp = clip.spec.preprocess_cfg
    processor = CLIPImageProcessor(size={"shortest_edge": pp["size"]}, crop_size={"height": pp["size"],
                                   "width": pp["size"]}, image_mean=list(pp["mean"]), image_std=list(pp["std"]),
                                   resample=3)
    return model.eval(), tokenizer, processor


@torch.inference_mode()
def check_same_embeddings(clip, hf_model, tokenizer, processor, images, texts) -> tuple[float, float]:
    """Min cosine between multimodal and transformers embeddings of the same inputs (images, texts)."""
    from torch.nn import functional as F

    ours_img = clip.encode_image(torch.stack([clip.preprocess(im) for im in images]))
    hf_img = hf_model.get_image_features(**processor(images=images, return_tensors="pt"))
    hf_img = hf_img if torch.is_tensor(hf_img) else hf_img.pooler_output
    ours_txt = clip.encode_text(clip.tokenize(texts))
    hf_txt = hf_model.get_text_features(**tokenizer(texts, padding="max_length", return_tensors="pt"))
    hf_txt = hf_txt if torch.is_tensor(hf_txt) else hf_txt.pooler_output
    return (F.cosine_similarity(ours_img, hf_img).min().item(), F.cosine_similarity(ours_txt, hf_txt).min().item())
