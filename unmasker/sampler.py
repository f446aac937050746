"""THE sampling loop. `iter_unmask` yields one `Step` per forward pass; `generate` consumes it.

Used unchanged by the CLI, the app, RL rollouts and evaluation. It owns the canvas, blocks,
token choice (greedy or float64 Gumbel), confidences and NFE accounting (paper 1.2); the policy
only says which eligible positions to commit, and what it says is checked, never rewritten.
The per-step features live in `features.py` (lean, chunked), the forward pass with its
optional KV cache in `kv_cache.py`.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch

from .dllm import DLLM, DLLMError
from .features import StepFeatures, context_features, propose, step_features  # noqa: F401 - re-exported
from .kv_cache import CACHE_MODES, make_forward
from .policies.base import FEATURES, StepContext, UnmaskPolicy, features_read
from .trajectory import Step, Trajectory


@dataclass(frozen=True)
class SamplerConfig:
    """gen_length L (canvas size), block_length (L = full diffusion), dLLM token temperature
    (0 = greedy), how many top alternatives per position to record (0 = none), the KV cache, the
    end-of-text early stop, and whether to record every feature whatever the policy reads."""

    gen_length: int = field(default=48, metadata={"help": "generation canvas length L"})
    block_length: int = field(default=8, metadata={"help": "semi-AR block length; = gen_length for full diffusion"})
    temperature: float = field(default=0.0, metadata={"help": "dLLM token temperature (0 = greedy argmax)"})
    top_alternatives: int = field(default=0, metadata={"help": "record the top-K alternatives per position"})
    cache: str = field(default="none", metadata={
        "help": "KV cache: none | prefix (keep the prompt and finished blocks) | dual (also what follows the "
                "block; Fast-dLLM). Needs model code that takes past_key_values (Fast-dLLM's LLaDA)"})
    eos_early_stop: bool = field(default=False, metadata={
        "help": "once a row has committed EOS with everything before it committed, fill the rest with EOS "
                "and spend no more passes on it (Learn2PD's end-of-text prediction)"})
    record_features: bool = field(default=False, metadata={
        "help": "compute margin and entropy every step even when the policy does not read them (for plots)"})

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
        if self.cache not in CACHE_MODES:
            raise ValueError(f"cache={self.cache!r}: expected one of {CACHE_MODES}")
        for name in ("eos_early_stop", "record_features"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}={getattr(self, name)!r}: must be True or False")

    @property
    def num_blocks(self) -> int:
        return self.gen_length // self.block_length


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
    Only the rows with work are run and featurised; only the features the policy reads
    (`features_read`) are computed, plus all of them with `config.record_features`.
    """
    if not isinstance(policy, UnmaskPolicy):
        raise TypeError(f"{type(policy).__name__} is not an UnmaskPolicy (needs a select(ctx) method)")
    reads = frozenset(FEATURES) if config.record_features else features_read(policy)
    ids, att = _prompt_tensors(dllm, prompts, config)
    device = dllm.device
    B, P = ids.shape
    L, BL = config.gen_length, config.block_length
    forward = make_forward(dllm, config.cache, P, L)
    mask_id = dllm.mask_id
    eos = torch.tensor(dllm.eos_ids, dtype=torch.long, device=device)
    generator = torch.Generator().manual_seed(seed)  # policies' randomness (small, on CPU)
    token_generator = torch.Generator(device=device).manual_seed(seed)  # token sampling, on device
    x = torch.cat([ids, torch.full((B, L), mask_id, dtype=torch.long)], dim=1).to(device)
    attn = torch.cat([att, torch.ones((B, L), dtype=torch.long)], dim=1).to(device)
    nfe = torch.zeros(B, dtype=torch.long, device=device)
    positions = torch.arange(L, device=device)
    feats = None  # (B, L) features of the latest pass; a cached pass refreshes only its window
    start = time.perf_counter()
    index = 0
    for block in range(config.num_blocks):
        lo, hi = block * BL, (block + 1) * BL
        in_block = (positions >= lo) & (positions < hi)
        block_masked = ((x[:, P:] == mask_id) & in_block).sum(-1)
        block_step = torch.zeros(B, dtype=torch.long, device=device)
        for pass_in_block in range(BL):
            masked = x[:, P:] == mask_id
            active = (masked & in_block).any(-1)
            if not active.any():
                break
            rows = active.nonzero().squeeze(-1)
            logits, w0, w1 = forward(x, attn, rows, lo, hi, first=pass_in_block == 0)
            f = step_features(logits, mask_id, config.temperature, token_generator, reads, config.top_alternatives)
            idle = _idle_features(logits.shape[-1], L, mask_id, config.top_alternatives, str(logits.device))
            del logits
            feats = _merge(feats, f, rows, active, (w0, w1), idle)
            eligible = masked & in_block & active[:, None]
            ctx = StepContext(
                **context_features(feats, reads, type(policy).__name__, eos),
                masked=masked, eligible=eligible, t=nfe.float() / L,
                block_step=block_step.clone(), block_masked=block_masked, block_length=BL,
                gen_length=L, generator=generator,
            )
            commit = policy.select(ctx)
            _check_action(commit, eligible, policy)
            gen = torch.where(commit, feats.proposals, x[:, P:])
            filled = _fill_after_eos(gen, mask_id, eos) if config.eos_early_stop else None
            x[:, P:] = gen
            nfe += active.long()
            block_step += active.long()
            yield Step(
                index=index, block=block, committed=commit, tokens=gen.clone(), proposals=feats.proposals,
                confidence=feats.confidence, token_prob=feats.token_prob, margin=feats.margin,
                entropy=feats.entropy, masked=masked, eligible=eligible, t=ctx.t, active=active,
                nfe=nfe.clone(), elapsed=time.perf_counter() - start, top_ids=feats.top_ids,
                top_probs=feats.top_probs, filled=filled,
            )
            index += 1


def _merge(prev: StepFeatures | None, f: StepFeatures, rows, active, window: tuple[int, int],
           idle: StepFeatures) -> StepFeatures:
    """(B, L) features of this pass: the rows that ran get `f` over their window and keep `prev`
    elsewhere (a cached pass recomputes only its window); rows that did not run get `idle`, the
    features of all-zero logits (what they showed when the loop zero-filled their logits). Fresh
    tensors every pass, so the `Step`s already yielded never change."""
    w0, w1 = window
    out = []
    for k, new in enumerate(f):
        if new is None:
            out.append(None)
            continue
        if prev is None:
            shape = (active.shape[0], idle.confidence.shape[1]) + tuple(new.shape[2:])
            t = idle[k][0, 0].expand(shape).clone()
        else:
            t = prev[k].clone()
            t[~active] = idle[k][0, 0]
        t[rows, w0:w1] = new
        out.append(t)
    return StepFeatures(*out)


@functools.lru_cache(maxsize=8)
def _idle_features(vocab: int, gen_length: int, mask_id: int, top_k: int, device: str) -> StepFeatures:
    """Features of all-zero logits, (1, gen_length) (never used: nothing of an idle row is eligible)."""
    zeros = torch.zeros((1, 1, vocab), device=device)
    f = step_features(zeros, mask_id, 0.0, None, frozenset(FEATURES), top_k)
    return StepFeatures(*(None if t is None else t.expand((1, gen_length) + tuple(t.shape[2:])) for t in f))


def _fill_after_eos(gen: torch.Tensor, mask_id: int, eos: torch.Tensor) -> torch.Tensor:
    """End-of-text early stop (Learn2PD's EoTP, arXiv 2509.25188): in a row whose first committed
    EOS has every position before it committed, fill the masked positions after it with that EOS,
    in place. Returns (B, L) bool, the positions filled."""
    done = gen != mask_id
    settled = done.long().cumprod(-1).bool()  # every position up to here is committed
    hit = torch.isin(gen, eos) & settled
    has = hit.any(-1)
    first = hit.long().argmax(-1)
    after = torch.arange(gen.shape[1], device=gen.device)[None, :] > first[:, None]
    filled = after & ~done & has[:, None]
    fill = gen.gather(1, first[:, None]).expand_as(gen)
    gen[filled] = fill[filled]
    return filled


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
        if step.filled is not None:
            unmask_step[step.filled.cpu()] = step.index
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
