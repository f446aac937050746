"""The oracle: a reference point for the evaluation, the limit a policy can reach on a given model.

NOT a usable policy (it needs the answer of a whole one-token-per-step decode first), so it is
not in the policy registry (`unmasker.policies.POLICIES`) and the app never offers it; the
evaluator knows it through `REFERENCES`. Definition (Learn2PD, arXiv 2509.25188, "extremely
greedy parallel"; `../shared/research/limits-and-peers.md` section 1):

1. decode each problem with one token per step (`top_k_confidence`, k = 1) -> final tokens f;
2. decode again and at every forward pass commit every eligible position whose current proposal
   already equals f at that position. When no eligible position matches, commit the single most
   confident eligible one (the k = 1 rule's own choice), so every pass makes progress.

Only the second decode's forward passes are counted as the oracle's NFE. Committing a proposal
that equals f keeps the canvas consistent with the reference, so the oracle reproduces the
reference answer almost always (`oracle_agreement` records how often exactly).

The sampler's `StepContext` carries no proposals, so the oracle reads them from the dLLM's
logits of the same pass (`TappedDLLM` records them; greedy proposals are their argmax with the
mask id excluded, exactly as `unmasker.sampler.step_features` makes them).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch

from unmasker.dllm import DLLM
from unmasker.policies.base import StepContext, top_n_mask
from unmasker.policies.heuristics import TopKConfidence


@dataclass
class TappedDLLM(DLLM):
    """A DLLM that keeps the logits of its last forward pass (`last`, (B_active, T, V))."""

    last: torch.Tensor | None = field(default=None, repr=False, compare=False)

    @classmethod
    def wrap(cls, dllm: DLLM) -> "TappedDLLM":
        return cls(**{f.name: getattr(dllm, f.name) for f in fields(DLLM)})

    def logits(self, input_ids, attention_mask):
        out = super().logits(input_ids, attention_mask)
        self.last = out
        return out


def greedy_proposals(tap: TappedDLLM, ctx: StepContext) -> torch.Tensor:
    """(B, L) greedy proposals of the pass `ctx` belongs to, from the tap's last logits. The
    sampler feeds only rows that still have work (`eligible.any(-1)`); other rows get -1."""
    if tap.last is None:
        raise RuntimeError("the oracle reads the proposals from TappedDLLM.logits, which this pass did not call "
                           "(run it without a KV cache)")
    B, L = ctx.eligible.shape
    # read once: a pass that did not go through `logits` (a KV-cache mode) then fails loudly
    logits, tap.last = tap.last[:, -L:].float().clone(), None
    logits[..., tap.mask_id] = float("-inf")  # as step_features: never propose the mask
    prop = logits.argmax(-1)
    active = ctx.eligible.any(-1)
    if prop.shape[0] == B:
        return prop
    if prop.shape[0] != int(active.sum()):
        raise RuntimeError(f"oracle: the last forward pass had {prop.shape[0]} rows, the step {B} "
                           f"({int(active.sum())} active)")
    out = torch.full((B, L), -1, dtype=prop.dtype, device=prop.device)
    out[active] = prop
    return out


def oracle_targets(proposals: torch.Tensor, eligible: torch.Tensor, final_tokens: torch.Tensor) -> torch.Tensor:
    """The oracle's match rule: (B, L) bool, eligible positions whose proposal already equals the
    reference's final token. `OracleCommit` commits these (plus a fallback when there are none);
    the distillation stage (`training.distill`) uses them as Bernoulli targets."""
    return eligible & (proposals == final_tokens.to(proposals.device))


class OracleCommit:
    """Commit every eligible position whose proposal equals the reference's final token; when none
    does, the most confident eligible position. Holds per-batch state: one instance per batch."""

    reads = frozenset({"token_prob"})  # the features it uses (the sampler may skip the others)

    def __init__(self, tap: TappedDLLM, final_tokens: torch.Tensor):
        self.tap, self.final = tap, final_tokens

    def select(self, ctx: StepContext) -> torch.Tensor:
        match = oracle_targets(greedy_proposals(self.tap, ctx), ctx.eligible, self.final)
        none = ctx.eligible.any(-1) & ~match.any(-1)
        best = top_n_mask(ctx.token_prob, ctx.eligible, torch.ones_like(ctx.block_step))
        return match | (best & none[:, None])


@dataclass(frozen=True)
class Oracle:
    """Reference point (not a policy): the fewest passes that keep the one-token-per-step answer."""

    def prepare(self, dllm: DLLM, prompts: list[str], config, seed: int):
        """Run the reference decode for this batch and return (dLLM, policy) for the measured one."""
        import unmasker

        if config.temperature:
            raise ValueError("the oracle is defined for a greedy dLLM (temperature 0)")
        ref = unmasker.generate(dllm, TopKConfidence(k=1), prompts, config, seed=seed)
        tap = TappedDLLM.wrap(dllm)
        policy = OracleCommit(tap, ref.tokens)
        policy.reference = ref
        return tap, policy


# name -> class of the evaluator's reference points (not policies; see the module docstring)
REFERENCES: dict[str, type] = {"oracle": Oracle}
