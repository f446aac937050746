"""Training-free unmasking rules. Each is a frozen dataclass: parameters validated in the
constructor, one verb `select(ctx)`. Definitions follow paper section 4 and anchors section 1.
Every rule commits at least one eligible position per sample that still has work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .base import StepContext, prefix_mask, schedule_count, top_n_mask


def _check_k(k):
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k={k!r}: tokens per step must be an integer >= 1")


@dataclass(frozen=True)
class _ScheduledTopK:
    """Top-k by a score, k from LLaDA's per-block schedule (about k tokens per step)."""

    k: int = field(default=1, metadata={"help": "tokens committed per step (LLaDA per-block schedule)"})

    def __post_init__(self):
        _check_k(self.k)

    def score(self, ctx: StepContext) -> torch.Tensor:
        raise NotImplementedError

    def select(self, ctx: StepContext) -> torch.Tensor:
        n = schedule_count(ctx.block_masked, ctx.block_step, self.k)
        return top_n_mask(self.score(ctx), ctx.eligible, n)


@dataclass(frozen=True)
class TopKConfidence(_ScheduledTopK):
    """High confidence (LLaDA `low_confidence` remasking): the k most confident positions."""
    reads = frozenset({"token_prob"})  # the features it looks at (policies/base.py features_read)

    def score(self, ctx):
        return ctx.token_prob


@dataclass(frozen=True)
class RandomOrder(_ScheduledTopK):
    """Random: k uniformly random eligible positions per step."""
    reads = frozenset()  # the features it looks at (policies/base.py features_read)

    def score(self, ctx):
        return torch.rand(ctx.eligible.shape, generator=ctx.generator, device="cpu").to(ctx.eligible.device)


@dataclass(frozen=True)
class Margin(_ScheduledTopK):
    """Top-k by the top-1 minus top-2 probability margin (Kim et al.; Dream `topk_margin`)."""
    reads = frozenset({"margin"})  # the features it looks at (policies/base.py features_read)

    def score(self, ctx):
        return ctx.margin


@dataclass(frozen=True)
class Entropy(_ScheduledTopK):
    """Top-k by negative entropy (Dream `entropy`)."""
    reads = frozenset({"entropy"})  # the features it looks at (policies/base.py features_read)

    def score(self, ctx):
        return -ctx.entropy


@dataclass(frozen=True)
class ConfidenceThreshold:
    """Fast-dLLM threshold: commit every eligible position with confidence >= threshold, and
    always at least the single most confident one."""
    reads = frozenset({"token_prob"})  # the features it looks at (policies/base.py features_read)

    threshold: float = field(default=0.9, metadata={"help": "confidence threshold lambda in (0, 1]"})

    def __post_init__(self):
        if not isinstance(self.threshold, (int, float)) or not (0.0 < self.threshold <= 1.0):
            raise ValueError(f"threshold={self.threshold!r}: must be in (0, 1]")

    def select(self, ctx):
        best = top_n_mask(ctx.token_prob, ctx.eligible, torch.ones_like(ctx.block_step))
        return ctx.eligible & ((ctx.token_prob >= self.threshold) | best)


@dataclass(frozen=True)
class Factor:
    """Fast-dLLM factor rule: with confidences sorted c_(1) >= c_(2) >= ..., commit the top n for
    the largest n with (n + 1) * (1 - c_(n)) <= factor (rank 1 always)."""
    reads = frozenset({"token_prob"})  # the features it looks at (policies/base.py features_read)

    factor: float = field(default=1.0, metadata={"help": "factor f > 0 of the parallel-decoding bound"})

    def __post_init__(self):
        if not isinstance(self.factor, (int, float)) or not (self.factor > 0 and math.isfinite(self.factor)):
            raise ValueError(f"factor={self.factor!r}: must be a finite number > 0")

    def select(self, ctx):
        s = torch.where(ctx.eligible, ctx.token_prob, torch.full_like(ctx.token_prob, -1.0))
        sorted_c, order = torch.sort(s, dim=-1, descending=True, stable=True)
        n = torch.arange(1, s.shape[-1] + 1, device=s.device, dtype=s.dtype)
        ok = (n + 1) * (1 - sorted_c) <= self.factor
        return prefix_mask(ok, order, ctx.eligible)


@dataclass(frozen=True)
class EBSampler:
    """Entropy-bounded sampler (Ben-Hamu et al.): sort eligible positions by entropy (ascending)
    and accept the largest prefix whose entropy sum minus its max entropy is <= gamma."""
    reads = frozenset({"entropy"})  # the features it looks at (policies/base.py features_read)

    gamma: float = field(default=0.1, metadata={"help": "entropy bound gamma >= 0 (nats)"})

    def __post_init__(self):
        if not isinstance(self.gamma, (int, float)) or not (self.gamma >= 0 and math.isfinite(self.gamma)):
            raise ValueError(f"gamma={self.gamma!r}: must be a finite number >= 0")

    def select(self, ctx):
        big = torch.finfo(ctx.entropy.dtype).max / 4
        h = torch.where(ctx.eligible, ctx.entropy, torch.full_like(ctx.entropy, big))
        sorted_h, order = torch.sort(h, dim=-1, stable=True)
        # cumsum - cummax: in ascending order the max of a prefix is its last element
        ok = (sorted_h.cumsum(-1) - sorted_h) <= self.gamma
        return prefix_mask(ok, order, ctx.eligible)
