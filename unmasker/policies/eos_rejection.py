"""EOS Early Rejection (EOSER) and the Ascending Step-Size schedule (ASS), arXiv 2509.23924.

Two training-free rules aimed at the full-diffusion failure, where a confidence rule commits the
confident EOS padding first (definitions from the authors' code, yjyddq/EOSER-ASS-RL
`eval/generate.py`; ../shared/research/limits-and-peers.md section 3):

* `EOSEarlyRejection` (their `eoser_generate`): LLaDA's low-confidence top-k with the per-block
  schedule (about k per step), except that a position whose proposal is an EOS token competes
  with its confidence times gamma_i = gamma_min + (gamma_max - gamma_min) * i / (S - 1), rising
  linearly over the block's S = ceil(M / k) steps (i = step in the block; gamma_max when S = 1).
  Their code divides by the total steps over all blocks, so in semi-AR the factor never reaches
  gamma_max; we use the block's own steps, which is the same thing in full diffusion (one block).
* `EOSRejectionASS` (their `eoser_ass_generate` with one block per our block): the schedule
  commits 2^i tokens at step i and the whole rest at the last step S - 1, S = floor(log2 M)
  (M = 128: 1, 2, 4, 8, 16, 32, 65 in 7 passes), with the EOS factor
  gamma_min + (gamma_max - gamma_min) * (2^(i+1) - 1) / 2^S. gamma_min = gamma_max = 1 is ASS alone.

Both read which proposals are EOS (`StepContext.proposal_is_eos`, declared in `reads`, so the
sampler computes it for them only). Every rule commits at least one eligible position per sample
that still has work.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .base import StepContext, schedule_count, top_n_mask


def eos_flags(ctx: StepContext, policy) -> torch.Tensor:
    """ctx.proposal_is_eos (B, L) bool, or a ValueError naming it when the context lacks it."""
    if ctx.proposal_is_eos is None:
        raise ValueError(f"{type(policy).__name__} needs ctx.proposal_is_eos (which proposals are an EOS token); "
                         "this context was built without it (unmasker.iter_unmask passes it)")
    return ctx.proposal_is_eos


def _check_gammas(lo, hi):
    for name, v in (("eos_min_gamma", lo), ("eos_max_gamma", hi)):
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not (0.0 <= v <= 1.0):
            raise ValueError(f"{name}={v!r}: must be a number in [0, 1]")
    if lo > hi:
        raise ValueError(f"eos_min_gamma={lo!r} > eos_max_gamma={hi!r}: the EOS factor must ascend")


def _scaled(ctx: StepContext, eos: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """token_prob with EOS proposals multiplied by the per-row factor gamma (B,)."""
    return torch.where(eos, ctx.token_prob * gamma[:, None].to(ctx.token_prob.dtype), ctx.token_prob)


@dataclass(frozen=True)
class EOSEarlyRejection:
    """EOSER (arXiv 2509.23924): top-k confidence (about k per step), EOS proposals' confidence
    scaled by a factor rising linearly from eos_min_gamma to eos_max_gamma over the block's steps."""

    k: int = field(default=1, metadata={"help": "tokens committed per step (LLaDA per-block schedule)"})
    eos_min_gamma: float = field(default=0.4, metadata={"help": "EOS confidence factor at a block's first step, in [0, 1]"})
    eos_max_gamma: float = field(default=1.0, metadata={"help": "EOS confidence factor at a block's last step, in [min, 1]"})

    reads = frozenset({"token_prob", "proposal_is_eos"})  # policies/base.py features_read

    def __post_init__(self):
        if not isinstance(self.k, int) or isinstance(self.k, bool) or self.k < 1:
            raise ValueError(f"k={self.k!r}: tokens per step must be an integer >= 1")
        _check_gammas(self.eos_min_gamma, self.eos_max_gamma)

    def gamma(self, ctx: StepContext) -> torch.Tensor:
        """(B,) EOS factor at this step."""
        steps = torch.div(ctx.block_masked.clamp(min=1) + self.k - 1, self.k, rounding_mode="floor")
        frac = (ctx.block_step.float() / (steps - 1).clamp(min=1).float()).clamp(max=1.0)
        g = self.eos_min_gamma + (self.eos_max_gamma - self.eos_min_gamma) * frac
        return torch.where(steps > 1, g, torch.full_like(g, self.eos_max_gamma))

    def select(self, ctx: StepContext) -> torch.Tensor:
        score = _scaled(ctx, eos_flags(ctx, self), self.gamma(ctx))
        return top_n_mask(score, ctx.eligible, schedule_count(ctx.block_masked, ctx.block_step, self.k))


def ascending_count(block_masked: torch.Tensor, block_step: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ASS schedule per sample: (tokens to commit now, S). With M masks at block start and
    S = max(1, floor(log2 M)), step i < S - 1 commits 2^i and step S - 1 the rest,
    M - (2^(S-1) - 1). Shapes (B,) -> (B,), (B,)."""
    m = block_masked.clamp(min=1)
    s = torch.floor(torch.log2(m.double())).long().clamp(min=1)
    last = m - (2 ** (s - 1) - 1)
    i = block_step
    n = torch.where(i < s - 1, 2 ** i.clamp(max=62), last)
    return n, s


@dataclass(frozen=True)
class EOSRejectionASS:
    """EOSER with the Ascending Step-Size schedule (arXiv 2509.23924): 2^i tokens at step i, the
    rest at step floor(log2 M) - 1 (7 passes for 128 masks); EOS confidence scaled by
    min + (max - min) (2^(i+1) - 1) / 2^S. eos_min_gamma = 1 gives ASS alone."""

    eos_min_gamma: float = field(default=0.01, metadata={"help": "EOS confidence factor before the first step, in [0, 1]"})
    eos_max_gamma: float = field(default=1.0, metadata={"help": "EOS confidence factor it ascends to, in [min, 1]"})

    reads = frozenset({"token_prob", "proposal_is_eos"})  # policies/base.py features_read

    def __post_init__(self):
        _check_gammas(self.eos_min_gamma, self.eos_max_gamma)

    def gamma(self, ctx: StepContext) -> torch.Tensor:
        _, s = ascending_count(ctx.block_masked, ctx.block_step)
        i = ctx.block_step.clamp(max=62)
        frac = ((2.0 ** (i + 1) - 1) / 2.0 ** s).clamp(max=1.0).float()
        return self.eos_min_gamma + (self.eos_max_gamma - self.eos_min_gamma) * frac

    def select(self, ctx: StepContext) -> torch.Tensor:
        eos = eos_flags(ctx, self) if self.eos_min_gamma < 1.0 else torch.zeros_like(ctx.eligible)
        n, _ = ascending_count(ctx.block_masked, ctx.block_step)
        # a block whose budget ran past its schedule (possible only if earlier commits fell short) gets everything
        n = torch.where(n < 1, ctx.eligible.sum(-1), n)
        return top_n_mask(_scaled(ctx, eos, self.gamma(ctx)), ctx.eligible, n)

