"""What a policy sees (`StepContext`) and the one verb it answers (`UnmaskPolicy.select`).

A policy decides *which eligible positions to commit now*. It does not own tokens, blocks,
temperature or NFE counting: the sampler does. All tensors are over the generation region only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch


# The per-position features a StepContext carries. confidence and token_prob cost nothing extra
# (they come with the softmax the proposal needs); margin and entropy do (issue 24);
# proposal_is_eos is cheap but needs the model's EOS ids, so it too is computed only when read.
FEATURES = ("confidence", "token_prob", "margin", "entropy", "proposal_is_eos")


def features_read(policy) -> frozenset[str]:
    """The features `policy` reads, from its `reads` attribute (an iterable of `FEATURES`
    names, usually a class attribute). A policy that declares nothing reads everything: the
    safe default, so any policy class keeps working, only less lean."""
    reads = getattr(policy, "reads", None)
    if reads is None:
        return frozenset(FEATURES)
    if isinstance(reads, str):
        raise ValueError(f"{type(policy).__name__}.reads={reads!r}: expected a set of names, not one string")
    reads = frozenset(reads)
    unknown = reads - set(FEATURES)
    if unknown:
        raise ValueError(f"{type(policy).__name__}.reads names unknown features {sorted(unknown)}; "
                         f"known: {list(FEATURES)}")
    return reads


class NotComputed:
    """Stands in for a feature the policy did not declare in `reads`: any use of it raises an
    error naming the policy and the fix, never a silent wrong number."""

    def __init__(self, name: str, policy: str):
        self.name, self.policy = name, policy

    def _fail(self, *args, **kwargs):
        raise AttributeError(f"ctx.{self.name} was not computed: {self.policy} does not list "
                             f"{self.name!r} in its `reads`; add it there")

    __getattr__ = _fail
    __neg__ = __pos__ = __abs__ = __getitem__ = __bool__ = __float__ = __len__ = __iter__ = _fail
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = _fail
    __lt__ = __le__ = __gt__ = __ge__ = _fail

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        for a in list(args) + list((kwargs or {}).values()):
            if isinstance(a, NotComputed):
                a._fail()
        return NotImplemented

    def __repr__(self):
        return f"NotComputed({self.name!r})"


@dataclass(frozen=True)
class StepContext:
    """Everything a policy may look at in one denoising step. B = batch, L = gen length.

    confidence: (B, L) float, top-1 probability max_v p(v) at every generation position
        (also committed ones; the learned policy's input, paper 2.1).
    token_prob: (B, L) float, probability of the proposed token (= confidence when greedy; LLaDA's
        `low_confidence` score under temperature).
    margin: (B, L) float, p(top1) - p(top2).
    entropy: (B, L) float, entropy of p in nats.
    proposal_is_eos: (B, L) bool, the proposal the sampler would commit at this position (the
        top-1 token when greedy) is one of the model's end-of-text ids (`DLLM.eos_ids`, which the
        embedded model also pads its canvas with). EOS Early Rejection reads it (arXiv 2509.23924).
        margin, entropy and proposal_is_eos are computed only for a policy whose `reads` names
        them (see `features_read`); otherwise they are a `NotComputed` that raises on use (None in
        a context built by hand without it).
    masked: (B, L) bool, still masked.
    eligible: (B, L) bool, masked, inside the current block, and the sample still has work.
    t: (B,) float, NFE used so far / L (paper 2.1: not the masked fraction).
    block_step: (B,) long, forward passes this sample already spent in the current block.
    block_masked: (B,) long, masked positions in the current block when the block began.
    """

    confidence: torch.Tensor
    token_prob: torch.Tensor
    margin: torch.Tensor | NotComputed
    entropy: torch.Tensor | NotComputed
    masked: torch.Tensor
    eligible: torch.Tensor
    t: torch.Tensor
    block_step: torch.Tensor
    block_masked: torch.Tensor
    block_length: int
    gen_length: int
    generator: torch.Generator | None = None
    proposal_is_eos: torch.Tensor | NotComputed | None = None


@runtime_checkable
class UnmaskPolicy(Protocol):
    """One verb: `select(ctx) -> (B, L) bool`, a subset of `ctx.eligible` to commit.

    Optionally a `reads` attribute naming the `FEATURES` it looks at (e.g.
    `reads = frozenset({"token_prob"})`), so the sampler skips the others; see `features_read`."""

    def select(self, ctx: StepContext) -> torch.Tensor: ...


def schedule_count(block_masked: torch.Tensor, block_step: torch.Tensor, k: int) -> torch.Tensor:
    """LLaDA's per-block schedule for about k tokens per step, per sample.

    With M masks at block start and S = ceil(M / k) steps, step i commits
    floor(M / S) + [i < M mod S] (remainder front-loaded; anchors 1.1). Shapes (B,) -> (B,).
    """
    m = block_masked.clamp(min=1)
    s = torch.div(m + k - 1, k, rounding_mode="floor")
    base = torch.div(m, s, rounding_mode="floor")
    return base + (block_step < (m % s)).long()


def top_n_mask(score: torch.Tensor, eligible: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """Commit the n (per row, (B,)) highest-scoring eligible positions; ties by position."""
    neg = torch.finfo(score.dtype).min
    s = torch.where(eligible, score, torch.full_like(score, neg))
    order = torch.argsort(s, dim=-1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(-1, order, torch.arange(score.shape[-1], device=score.device).expand_as(order))
    n = torch.minimum(n, eligible.sum(-1))
    return eligible & (rank < n[:, None])


def prefix_mask(sorted_ok: torch.Tensor, order: torch.Tensor, eligible: torch.Tensor) -> torch.Tensor:
    """Given per-rank acceptance in sorted order, keep the largest accepted prefix (>= 1)."""
    n_eligible = eligible.sum(-1)
    ranks = torch.arange(sorted_ok.shape[-1], device=sorted_ok.device)
    ok = sorted_ok & (ranks[None, :] < n_eligible[:, None])
    # largest n such that rank n-1 is accepted (condition need not be monotone; Fast-dLLM takes the
    # largest accepted rank), at least one
    n = torch.where(ok, ranks[None, :] + 1, torch.zeros_like(ranks)[None, :]).max(-1).values
    n = torch.minimum(n.clamp(min=1), n_eligible)
    rank = torch.empty_like(order)
    rank.scatter_(-1, order, ranks.expand_as(order))
    return eligible & (rank < n[:, None])
