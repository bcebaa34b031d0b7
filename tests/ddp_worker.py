"""Launched by test_training.py under `torchrun --nproc_per_node 2`: one DDP step of the real training code
on half of a fixed 8-sample batch per rank, compared on rank 0 with a 1-process step on all 8."""

import sys

import torch

import multimodal as mm
from multimodal.distributed import session
from multimodal_train.distributed import all_reduce_mean, wrap_ddp
from multimodal_train.objectives import ContrastiveObjective, make_contrastive_loss


def fresh_model():
    torch.manual_seed(0)
    return mm.create_model("tiny")


def no_autocast():
    return torch.autocast("cpu", enabled=False)


def step(model, forward, images, tokens, rank: int, world_size: int) -> torch.Tensor:
    objective = ContrastiveObjective(model, forward, make_contrastive_loss("clip", rank, world_size), no_autocast)
    loss = objective([{"image": images, "text": tokens}])
    loss.backward()
    return loss.detach()


def main(out: str) -> None:
    with session("cpu") as info:
        run(out, info)


def run(out: str, info) -> None:
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(123)
    images = torch.randn(8, 3, 32, 32, generator=g)
    model = fresh_model()
    tokens = model.tokenize([f"caption number {i}" for i in range(8)])
    half = slice(4 * info.rank, 4 * info.rank + 4)

    loss = step(model, wrap_ddp(model, info), images[half], tokens[half], info.rank, info.world_size)
    loss_2rank = all_reduce_mean(loss.item(), info)  # the per-rank losses average to the global-batch loss
    grads_2rank = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    if info.is_main:
        reference = fresh_model()
        loss_1 = step(reference, reference, images, tokens, 0, 1)
        grads_1 = {n: p.grad.clone() for n, p in reference.named_parameters() if p.grad is not None}
        torch.save({"loss_2rank": loss_2rank, "loss_1rank": loss_1.item(), "grads_2rank": grads_2rank,
                    "grads_1rank": grads_1}, out)


if __name__ == "__main__":
    main(sys.argv[1])
