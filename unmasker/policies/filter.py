"""Learn2PD's filter (arXiv 2509.25188), a second learned family beside the paper's network.

A two-layer MLP (about 2.4K parameters at a block of 8) reads the top-1 confidences and mask bits
of the *current block* and gives one logit per block position: the chance that the position's
current proposal already equals the final answer's token (the oracle's label, training/oracle.py).
It is trained by supervision on those labels (`python -m training.train_policy --family filter
--distill_rounds N --distill_only`, the same DAgger stage as the paper network's warm start) and
run by `LearnedPolicy`, usually with its deterministic rule (`decision_threshold`: commit the block's masked
positions whose probability reaches it, at least the top one). Learn2PD's End-of-Text Prediction is
the loop's `SamplerConfig.eos_early_stop`, open to every policy.

Same signature as `ConfidencePolicyNet` (confidence (B, L), masked (B, L), t (B,)) -> logits
(B, L), so the distillation, GRPO, the evaluator and the page use it unchanged. The current block
of a row is the block holding its first masked position (where the sampler's eligible positions
lie); logits outside it are a constant `OUTSIDE` (finite, so a BCE over them stays finite; no
position there is ever eligible).
"""

from __future__ import annotations

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

FAMILY = "learn2pd_filter"  # config.json's "family": how load_policy_net tells this net from the paper's
OUTSIDE = -20.0


class FilterNet(nn.Module, PyTorchModelHubMixin):
    """(confidence (B, L), masked (B, L), t (B,) unused) -> logits (B, L), nonzero only on the
    current block of `block_length` positions."""

    decision_threshold = 0.5  # the rule it is validated with and its card gives (Learn2PD's); the paper's net has none

    def __init__(self, block_length: int = 8, hidden: int = 96, init_bias: float = -2.0, family: str = FAMILY):
        super().__init__()
        if family != FAMILY:
            raise ValueError(f"family={family!r}: a FilterNet's family is {FAMILY!r}")
        for name, value in (("block_length", block_length), ("hidden", hidden)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r}: must be an integer >= 1")
        self.block_length, self.family = block_length, family
        self.mlp = nn.Sequential(nn.Linear(2 * block_length, hidden), nn.ReLU(), nn.Linear(hidden, block_length))
        nn.init.constant_(self.mlp[-1].bias, init_bias)

    def window(self, masked: torch.Tensor) -> torch.Tensor:
        """(B, block_length) canvas indices of each row's current block."""
        B, L = masked.shape
        if L % self.block_length:
            raise ValueError(f"this filter reads blocks of {self.block_length}, which do not tile a "
                             f"generation of {L}")
        first = masked.float().argmax(-1)  # the first masked position (0 for a row with none: any block will do)
        start = torch.div(first, self.block_length, rounding_mode="floor") * self.block_length
        return start[:, None] + torch.arange(self.block_length, device=masked.device)

    def forward(self, confidence: torch.Tensor, masked: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        dtype = self.mlp[0].weight.dtype
        idx = self.window(masked)
        x = torch.cat([confidence.gather(1, idx).to(dtype), masked.gather(1, idx).to(dtype)], dim=-1)
        out = self.mlp(x)
        return torch.full(confidence.shape, OUTSIDE, dtype=out.dtype, device=out.device).scatter(1, idx, out)
