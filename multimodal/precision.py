"""Whether bfloat16 pays off on a device: CPUs without bf16 kernels (AVX2 only) emulate it, measured 6-10x slower
than fp32 here, so training, tagging and evaluation fall back to fp32 there and say so once."""

from __future__ import annotations

import sys

import torch

SLOW_BF16 = "this CPU has no bf16 kernels (no AVX512-BF16/AMX; measured 6-10x slower than fp32 here)"


def bf16_is_fast(device: torch.device | str) -> bool:
    """True on accelerators and on CPUs with native bf16 matrix kernels; warns once (stderr) when False."""
    if torch.device(device).type != "cpu":
        return True
    fast = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    if not fast and not getattr(bf16_is_fast, "warned", False):
        bf16_is_fast.warned = True
        print(f"bf16: {SLOW_BF16}; running fp32", file=sys.stderr)
    return fast
