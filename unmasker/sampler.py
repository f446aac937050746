"""THE sampling loop. `iter_unmask` yields one `Step` per forward pass; `generate` consumes it.

Used unchanged by the CLI, the app, RL rollouts and evaluation. It owns the canvas, blocks,
token choice (greedy or float64 Gumbel), confidences and NFE accounting (paper 1.2); the policy
only says which eligible positions to commit, and what it says is checked, never rewritten.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterator, NamedTuple, Sequence

import torch

from .dllm import DLLM, DLLMError
from .policies.base import StepContext, UnmaskPolicy
from .trajectory import Step, Trajectory


@dataclass(frozen=True)
class SamplerConfig:
    """gen_length L (canvas size), block_length (L = full diffusion), dLLM token temperature
    (0 = greedy), and how many top alternatives per position to record (0 = none)."""

    gen_length: int = field(default=48, metadata={"help": "generation canvas length L"})
    block_length: int = field(default=8, metadata={"help": "semi-AR block length; = gen_length for full diffusion"})
    temperature: float = field(default=0.0, metadata={"help": "dLLM token temperature (0 = greedy argmax)"})
    top_alternatives: int = field(default=0, metadata={"help": "record the top-K alternatives per position"})

    def __post_init__(self):
        for name in ("gen_length", "block_length"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}={v!r}: must be an integer >= 1")
        if self.gen_length % self.block_length:
            raise ValueError(
                f"block_length={self.block_length} must divide gen_length={self.gen_length}"
            )
        if not isinstance(self.temperature, (int, float)) or not (0 <= self.temperature < float("inf")):
            raise ValueError(f"temperature={self.temperature!r}: must be a finite number >= 0")
        if not isinstance(self.top_alternatives, int) or self.top_alternatives < 0:
            raise ValueError(f"top_alternatives={self.top_alternatives!r}: must be an integer >= 0")

    @property
    def num_blocks(self) -> int:
        return self.gen_length // self.block_length


def propose(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    """Token proposals (B, L) from logits (B, L, V): argmax, or argmax(exp(l) / (-log U)^T), an
    exact sample from softmax(l / T). Float64 because low-precision Gumbel noise hurts quality
    (LLaDA generate.py, arXiv 2409.02908)."""
    if temperature == 0:
        return logits.argmax(-1)
    l64 = logits.to(torch.float64)
    # noise is drawn where the logits live (a CPU draw for LLaDA's 126K vocabulary would be slow)
    u = torch.rand(l64.shape, generator=generator, dtype=torch.float64, device=l64.device)
    u = u.clamp(min=1e-300)
    return (l64.exp() / (-torch.log(u)) ** temperature).argmax(-1)


class StepFeatures(NamedTuple):
    """What one forward pass gives a policy; all (B, L) except probs (B, L, V)."""

    probs: torch.Tensor
    proposals: torch.Tensor
    confidence: torch.Tensor
    token_prob: torch.Tensor
    margin: torch.Tensor
    entropy: torch.Tensor


def step_features(logits: torch.Tensor, mask_id: int, temperature: float,
                  generator: torch.Generator | None) -> StepFeatures:
    """Logits (B, L, V) -> proposals and the per-position numbers a `StepContext` carries.
    Shared by `iter_unmask` and the diffusers scheduler, so both see identical numbers."""
    # one fp32 copy, so the caller's logits stay untouched
    logits = logits.clone() if logits.dtype == torch.float32 else logits.float()
    # Never propose the mask token itself: committing it would leave a position masked
    # while counting it as done (dInfer excludes such proposals too, anchors 1.4).
    logits[..., mask_id] = float("-inf")
    probs = torch.softmax(logits, dim=-1)  # confidences from noise-free probabilities
    proposals = propose(logits, temperature, generator)
    top2 = probs.topk(2, dim=-1).values
    token_prob = probs.gather(-1, proposals[..., None]).squeeze(-1)
    entropy = -(probs * torch.log(probs.clamp(min=1e-30))).sum(-1)
    return StepFeatures(probs, proposals, top2[..., 0], token_prob, top2[..., 0] - top2[..., 1], entropy)


def _prompt_tensors(dllm: DLLM, prompts, config: SamplerConfig):
    if not isinstance(dllm, DLLM):
        raise DLLMError(f"{getattr(dllm, 'name', type(dllm).__name__)} is not a masked dLLM; DiffusionGemma samples "
                        "through its own loop: GemmaDLLM.generate (unmasker/gemma.py) or the app")
    if isinstance(prompts, tuple) and len(prompts) == 2 and isinstance(prompts[0], torch.Tensor):
        ids, att = prompts
        if (ids == dllm.mask_id).any():
            raise DLLMError(f"prompt ids contain the mask id {dllm.mask_id}")
        return ids, att
    return dllm.encode(prompts, dllm.max_prompt_tokens(config.gen_length))


@torch.no_grad()
def iter_unmask(
    dllm: DLLM,
    policy: UnmaskPolicy,
    prompts: Sequence[str] | tuple[torch.Tensor, torch.Tensor],
    config: SamplerConfig = SamplerConfig(),
    seed: int = 0,
) -> Iterator[Step]:
    """Run the unmasking loop and yield a `Step` after every forward pass.

    `prompts`: list of strings, or pre-tokenised (input_ids, attention_mask), left-padded (B, P).
    Per sample, NFE grows only while its current block still has masks; each block gets at most
    `block_length` passes, so NFE <= gen_length. Positions a policy leaves masked past a block's
    budget stay masked (possible only without fallback, as in RL training, paper 2.5).
    """
    if not isinstance(policy, UnmaskPolicy):
        raise TypeError(f"{type(policy).__name__} is not an UnmaskPolicy (needs a select(ctx) method)")
    ids, att = _prompt_tensors(dllm, prompts, config)
    device = dllm.device
    B, P = ids.shape
    L, BL = config.gen_length, config.block_length
    mask_id = dllm.mask_id
    generator = torch.Generator().manual_seed(seed)  # policies' randomness (small, on CPU)
    token_generator = torch.Generator(device=device).manual_seed(seed)  # token sampling, on device
    x = torch.cat([ids, torch.full((B, L), mask_id, dtype=torch.long)], dim=1).to(device)
    attn = torch.cat([att, torch.ones((B, L), dtype=torch.long)], dim=1).to(device)
    nfe = torch.zeros(B, dtype=torch.long, device=device)
    positions = torch.arange(L, device=device)
    start = time.perf_counter()
    index = 0
    for block in range(config.num_blocks):
        in_block = (positions >= block * BL) & (positions < (block + 1) * BL)
        block_masked = ((x[:, P:] == mask_id) & in_block).sum(-1)
        block_step = torch.zeros(B, dtype=torch.long, device=device)
        for _ in range(BL):
            masked = x[:, P:] == mask_id
            active = (masked & in_block).any(-1)
            if not active.any():
                break
            logits = _active_logits(dllm, x, attn, active)[:, P:]
            probs, proposals, confidence, token_prob, margin, entropy = step_features(
                logits, mask_id, config.temperature, token_generator
            )
            eligible = masked & in_block & active[:, None]
            ctx = StepContext(
                confidence=confidence, token_prob=token_prob, margin=margin,
                entropy=entropy, masked=masked, eligible=eligible, t=nfe.float() / L,
                block_step=block_step.clone(), block_masked=block_masked, block_length=BL,
                gen_length=L, generator=generator,
            )
            commit = policy.select(ctx)
            _check_action(commit, eligible, policy)
            gen = torch.where(commit, proposals, x[:, P:])
            x[:, P:] = gen
            nfe += active.long()
            block_step += active.long()
            top_ids = top_probs = None
            if config.top_alternatives:
                top_probs, top_ids = probs.topk(config.top_alternatives, dim=-1)
            yield Step(
                index=index, block=block, committed=commit, tokens=gen.clone(), proposals=proposals,
                confidence=confidence, token_prob=token_prob, margin=margin, entropy=entropy,
                masked=masked, eligible=eligible, t=ctx.t, active=active, nfe=nfe.clone(),
                elapsed=time.perf_counter() - start, top_ids=top_ids, top_probs=top_probs,
            )
            index += 1


def _active_logits(dllm: DLLM, x: torch.Tensor, attn: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """Logits for the rows that still have work; finished rows get zeros (uniform, never used:
    nothing of theirs is eligible). Saves the passes a batch would spend waiting for its slowest
    sample (1.3-1.5x for adaptive policies)."""
    if bool(active.all()):
        return dllm.logits(x, attn)
    rows = active.nonzero().squeeze(-1)
    sub = dllm.logits(x[rows], attn[rows])
    out = torch.zeros((x.shape[0],) + tuple(sub.shape[1:]), dtype=sub.dtype, device=sub.device)
    out[rows] = sub
    return out


def _check_action(commit, eligible, policy):
    if not isinstance(commit, torch.Tensor) or commit.dtype != torch.bool or commit.shape != eligible.shape:
        raise TypeError(
            f"{type(policy).__name__}.select must return a bool tensor of shape {tuple(eligible.shape)}, got "
            f"{getattr(commit, 'dtype', type(commit))} {tuple(getattr(commit, 'shape', ()))}"
        )
    if (commit & ~eligible).any():
        raise ValueError(f"{type(policy).__name__} committed positions that are not eligible")


def generate(
    dllm: DLLM,
    policy: UnmaskPolicy,
    prompts: Sequence[str] | tuple[torch.Tensor, torch.Tensor],
    config: SamplerConfig = SamplerConfig(),
    seed: int = 0,
    keep_steps: bool = False,
) -> Trajectory:
    """Run `iter_unmask` to the end and return the `Trajectory` (steps kept if asked)."""
    ids, att = _prompt_tensors(dllm, prompts, config)
    B, L = ids.shape[0], config.gen_length
    unmask_step = torch.full((B, L), -1, dtype=torch.long)
    steps, last = [], None
    start = time.perf_counter()
    for step in iter_unmask(dllm, policy, (ids, att), config, seed):
        unmask_step[step.committed.cpu()] = step.index
        if keep_steps:
            steps.append(step)
        last = step
    if last is None:  # nothing to do (cannot happen with L >= 1, kept for clarity)
        tokens = torch.full((B, L), dllm.mask_id, dtype=torch.long)
        nfe = torch.zeros(B, dtype=torch.long)
    else:
        tokens, nfe = last.tokens.cpu(), last.nfe.cpu()
    return Trajectory(
        prompt_ids=ids, tokens=tokens, nfe=nfe, unmask_step=unmask_step, texts=dllm.decode(tokens),
        mask_id=dllm.mask_id, elapsed=time.perf_counter() - start, steps=steps,
    )
