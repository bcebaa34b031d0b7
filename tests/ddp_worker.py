"""Launched by test_training.py under `torchrun --nproc_per_node 2`: one DDP step of the real training code
on half of a fixed 8-sample batch per rank, compared on rank 0 with a 1-process step on all 8."""

import sys

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

import multimodal as mm
from multimodal_train.clip import contrastive_step, make_loss
from multimodal_train.distributed import DistInfo, all_reduce_mean, cleanup, init_distributed


def fresh_model():
    torch.manual_seed(0)
    return mm.create_model("tiny")


def no_autocast():
    return torch.autocast("cpu", enabled=False)


def main(out: str) -> None:
    info = init_distributed("cpu")
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(123)
    images = torch.randn(8, 3, 32, 32, generator=g)
    model = fresh_model()
    tokens = model.tokenize([f"caption number {i}" for i in range(8)])
    half = slice(4 * info.rank, 4 * info.rank + 4)

    ddp = DDP(model)
    loss = contrastive_step(ddp, [(images[half], tokens[half])], make_loss("clip", info), no_autocast)
    loss_2rank = all_reduce_mean(loss.item(), info)  # the per-rank losses average to the global-batch loss
    grads_2rank = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    if info.is_main:
        reference = fresh_model()
        loss_1 = contrastive_step(reference, [(images, tokens)], make_loss("clip", DistInfo()), no_autocast)
        grads_1 = {n: p.grad.clone() for n, p in reference.named_parameters() if p.grad is not None}
        torch.save({"loss_2rank": loss_2rank, "loss_1rank": loss_1.item(), "grads_2rank": grads_2rank,
                    "grads_1rank": grads_1}, out)
    cleanup()


if __name__ == "__main__":
    main(sys.argv[1])
