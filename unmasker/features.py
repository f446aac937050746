"""Per-step features: logits (B, L, V) -> token proposals and the per-position numbers a
`StepContext` carries, computed lean.

Confidence, the proposed token's probability and the proposal itself are always computed; the
top-2 margin, the entropy, whether the proposal is an EOS token and the top-K alternatives only
when asked (the policy's `reads`, the caller's `top_k`). The work runs over chunks of rows of at most `CHUNK_ELEMENTS` logits, so at
most one chunk is ever held in fp32 (or float64 for Gumbel noise), never a copy of the whole
tensor: with LLaDA's vocabulary of 126,464 the old one-shot version took 6.9x the bf16 logits on
top of them (issue 24). Every number is computed as before, per chunk, so it is bit-identical.
Knows nothing about blocks, policies or models.
"""

from __future__ import annotations

from typing import Iterator, NamedTuple

import torch

from .policies.base import FEATURES, NotComputed

# Logits per chunk: 16M elements = 64 MiB in fp32, 128 MiB in float64 (Gumbel noise). Small
# vocabularies take whole batches in one chunk; LLaDA's takes ~132 positions per chunk.
CHUNK_ELEMENTS = 1 << 24


class StepFeatures(NamedTuple):
    """What one forward pass gives a policy; (B, L) each, top_* (B, L, K). A feature that was
    not asked for is None."""

    proposals: torch.Tensor
    confidence: torch.Tensor
    token_prob: torch.Tensor
    margin: torch.Tensor | None
    entropy: torch.Tensor | None
    top_ids: torch.Tensor | None = None
    top_probs: torch.Tensor | None = None


def _chunks(B: int, L: int, V: int, budget: int) -> Iterator[tuple[slice, slice]]:
    """(rows, positions) slices covering (B, L) in row-major order, each <= budget logits
    (a single position may exceed it). Row-major order keeps the noise stream of one big draw."""
    if L * V <= budget:
        step = max(1, budget // (L * V))
        for b in range(0, B, step):
            yield slice(b, min(b + step, B)), slice(0, L)
        return
    step = max(1, budget // V)
    for b in range(B):
        for s in range(0, L, step):
            yield slice(b, b + 1), slice(s, min(s + step, L))


def _propose(chunk: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    """Token proposals from fp32 logits: argmax, or argmax(exp(l) / (-log U)^T), an exact sample
    from softmax(l / T). Float64 because low-precision Gumbel noise hurts quality (LLaDA
    generate.py, arXiv 2409.02908). In place on the float64 copy: two chunk-sized buffers."""
    if temperature == 0:
        return chunk.argmax(-1)
    l64 = chunk.to(torch.float64)
    # noise is drawn where the logits live (a CPU draw for LLaDA's 126K vocabulary would be slow)
    u = torch.rand(l64.shape, generator=generator, dtype=torch.float64, device=l64.device)
    u.clamp_(min=1e-300).log_().neg_().pow_(temperature)
    return l64.exp_().div_(u).argmax(-1)


def propose(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    """Token proposals (B, L) from logits (B, L, V), chunked like `step_features`."""
    B, L, V = logits.shape
    out = torch.empty((B, L), dtype=torch.long, device=logits.device)
    for rows, pos in _chunks(B, L, V, CHUNK_ELEMENTS):
        out[rows, pos] = _propose(logits[rows, pos].float(), temperature, generator)
    return out


def step_features(logits: torch.Tensor, mask_id: int, temperature: float, generator: torch.Generator | None,
                  features: frozenset[str] | set[str] = frozenset(FEATURES), top_k: int = 0) -> StepFeatures:
    """Logits (B, L, V), any float dtype, left untouched -> `StepFeatures`.

    `features`: which of `FEATURES` to compute (confidence and token_prob always are); `top_k`:
    how many top alternatives to return (0: none). Shared by `iter_unmask` and the diffusers
    scheduler, so both see identical numbers."""
    B, L, V = logits.shape
    dev = logits.device
    want_margin, want_entropy = "margin" in features, "entropy" in features
    empty = lambda dtype=torch.float32: torch.empty((B, L), dtype=dtype, device=dev)  # noqa: E731
    proposals, confidence, token_prob = empty(torch.long), empty(), empty()
    margin = empty() if want_margin else None
    entropy = empty() if want_entropy else None
    top_ids = torch.empty((B, L, top_k), dtype=torch.long, device=dev) if top_k else None
    top_probs = torch.empty((B, L, top_k), dtype=torch.float32, device=dev) if top_k else None
    for rows, pos in _chunks(B, L, V, CHUNK_ELEMENTS):
        # the one fp32 copy (of this chunk only), so the caller's logits stay untouched
        chunk = logits[rows, pos].float()
        if logits.dtype == torch.float32:  # .float() was a view
            chunk = chunk.clone()
        # Never propose the mask token itself: committing it would leave a position masked
        # while counting it as done (dInfer excludes such proposals too, anchors 1.4).
        chunk[..., mask_id] = float("-inf")
        prop = _propose(chunk, temperature, generator)
        probs = torch.softmax(chunk, dim=-1)  # confidences from noise-free probabilities
        del chunk
        proposals[rows, pos] = prop
        token_prob[rows, pos] = probs.gather(-1, prop[..., None]).squeeze(-1)
        if want_margin:
            top2 = probs.topk(2, dim=-1).values
            confidence[rows, pos] = top2[..., 0]
            margin[rows, pos] = top2[..., 0] - top2[..., 1]
        else:
            confidence[rows, pos] = probs.amax(-1)
        if top_k:
            top_probs[rows, pos], top_ids[rows, pos] = probs.topk(top_k, dim=-1)
        if want_entropy:
            plogp = probs.clamp(min=1e-30).log_().mul_(probs)  # one more chunk-sized buffer
            entropy[rows, pos] = -plogp.sum(-1)
    return StepFeatures(proposals, confidence, token_prob, margin, entropy, top_ids, top_probs)


def context_features(f: StepFeatures, reads: frozenset[str], policy_name: str,
                     eos_ids: torch.Tensor | None = None) -> dict:
    """The per-position feature fields of a `StepContext` from (B, L) features `f`: a feature
    outside `reads` is a `NotComputed` naming `policy_name`. proposal_is_eos (B, L) bool is
    `f.proposals` in `eos_ids` (1-D long), computed from the merged proposals, so a KV-cached
    pass that refreshed only a window still flags every position. Shared by `iter_unmask` and
    the diffusers scheduler."""
    def maybe(name, value):
        return value if name in reads and value is not None else NotComputed(name, policy_name)

    is_eos = None
    if "proposal_is_eos" in reads:
        if eos_ids is None:
            raise ValueError(f"{policy_name} reads proposal_is_eos, but no EOS ids were given")
        is_eos = torch.isin(f.proposals, eos_ids.to(f.proposals.device))
    return {"confidence": f.confidence, "token_prob": f.token_prob, "margin": maybe("margin", f.margin),
            "entropy": maybe("entropy", f.entropy), "proposal_is_eos": maybe("proposal_is_eos", is_eos)}
