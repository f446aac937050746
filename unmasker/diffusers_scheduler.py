"""Our unmasking policies as a diffusers scheduler, for `LLaDA2Pipeline(model, scheduler, tokenizer)`.

`UnmaskPolicyScheduler` replaces diffusers' `BlockRefinementScheduler` (diffusers 0.42): the
pipeline owns the canvas, the blocks and the model calls; on each forward pass it hands the
scheduler the current block's logits, and `step()` answers which masked positions to commit
(`transfer_index`) with any registry policy, the learned one included. `DLLMPipelineModel` lets a
`DLLM` from `load_dllm` serve as the pipeline's model (Dream's shifted logits, left padding).

What the pipeline decides and this module cannot change (pipeline_llada2.py, diffusers 0.42.1):
* Blocks are aligned to position 0 of prompt + generation, and the model sees only the blocks up
  to the current one (block-causal). Our own sampler aligns blocks to the generation start and
  shows the model the whole canvas, so the two agree token for token only when one block holds
  the whole generation (full diffusion with block_length = prompt + gen_length).
* The policy sees the current block without its prompt positions, not the whole canvas as in
  `iter_unmask`; a semi-AR learned policy therefore reads a block-length window.
* The pipeline's commit-rule arguments (`threshold`, `editing_threshold`, `minimal_topk`) are
  ignored: the policy decides, and committed tokens are never edited.

This module imports diffusers; `import unmasker` does not import this module.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import SimpleNamespace

import torch
from diffusers import BlockRefinementScheduler, ConfigMixin, SchedulerMixin
from diffusers.configuration_utils import register_to_config
from diffusers.utils import BaseOutput

from .dllm import DLLM
from .policies import build_policy
from .features import context_features, step_features
from .policies.base import StepContext, features_read
from .sampler import _check_action

logger = logging.getLogger(__name__)


@dataclass
class UnmaskSchedulerOutput(BaseOutput):
    """The fields `LLaDA2Pipeline` reads from `BlockRefinementSchedulerOutput`, same meaning.
    Shapes: (B, block_length), pred_logits (B, block_length, V)."""

    prev_sample: torch.LongTensor
    transfer_index: torch.BoolTensor
    editing_transfer_index: torch.BoolTensor
    sampled_tokens: torch.LongTensor
    sampled_probs: torch.Tensor
    pred_logits: torch.Tensor


class UnmaskPolicyScheduler(SchedulerMixin, ConfigMixin):
    """Commit the masked positions a registry policy selects (`unmasker.POLICIES`).

    policy / policy_params: a registry name and its parameters, e.g. ``"learned"``,
    ``{"checkpoint": "checkpoints/policies/v3-semiar-a1", "temperature": 0.5}``.
    gen_length: the pipeline call's `gen_length`; the learned policy's time input is NFE / gen_length.
    seed: seeds the policy's own randomness (Bernoulli draws) at every pipeline call.
    eos_token_id: the model's end-of-text id(s), needed by a policy that reads
    ``proposal_is_eos`` (EOS Early Rejection): `step()` is not told them by the pipeline.

    After a call, `nfe` (B,) holds forward passes per row counted as `iter_unmask` counts them
    (while the row's block still has masks), `forward_passes` the passes the pipeline ran, and
    `forced` (B,) the positions committed because a block ran out of `num_inference_steps`.
    """

    order = 1

    @register_to_config
    def __init__(self, policy: str = "top_k_confidence", policy_params: dict | None = None,
                 block_length: int = 32, gen_length: int = 256, seed: int = 0,
                 eos_token_id: int | list[int] | None = None):
        for name, value in (("block_length", block_length), ("gen_length", gen_length)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}={value!r}: must be an integer >= 1")
        self.unmask_policy = build_policy(policy, **(policy_params or {}))
        ids = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id or [])
        if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
            raise ValueError(f"eos_token_id={eos_token_id!r}: expected a token id or a list of them")
        if "proposal_is_eos" in features_read(self.unmask_policy) and not ids:
            raise ValueError(f"policy {policy!r} reads proposal_is_eos: pass eos_token_id= (the model's "
                             "end-of-text id, e.g. tokenizer.eos_token_id)")
        self._eos_ids = torch.tensor(ids, dtype=torch.long) if ids else None
        self.num_inference_steps = block_length
        self.timesteps = torch.arange(block_length - 1, -1, -1)
        self._reset()

    def _reset(self):
        self.nfe = self.forced = self._finished = None
        self.forward_passes = 0
        self._generator = torch.Generator().manual_seed(self.config.seed)
        self._block_step = self._block_masked = self._left_masked = None

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None,
                      block_length: int | None = None) -> None:
        """Called once per pipeline call: the step budget per block. Resets NFE counters and seeds."""
        if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"num_inference_steps={num_inference_steps!r}: must be an integer >= 1")
        if block_length is not None and block_length < 1:
            raise ValueError(f"block_length={block_length!r}: must be >= 1")
        self.num_inference_steps = num_inference_steps
        self.timesteps = torch.arange(num_inference_steps - 1, -1, -1, device=device)
        self._reset()

    def step(self, model_output: torch.Tensor, timestep: int | torch.Tensor, sample: torch.LongTensor, *,
             mask_token_id: int | None = None, temperature: float = 0.0, top_p: float | None = None,
             top_k: int | None = None, sampling_method: str = "auto", threshold: float | None = None,
             editing_threshold: float | None = None, minimal_topk: int | None = None,
             prompt_mask: torch.BoolTensor | None = None, generator: torch.Generator | None = None,
             return_dict: bool = True) -> UnmaskSchedulerOutput | tuple:
        """One forward pass: model_output (B, BL, V) logits of the block, sample (B, BL) its tokens,
        timestep the step index within the block (0 starts a block). `prompt_mask` (BL,) marks
        prompt positions. Keywords are `BlockRefinementScheduler.step`'s; threshold,
        editing_threshold and minimal_topk are accepted and ignored (the policy decides)."""
        if mask_token_id is None:
            raise ValueError("mask_token_id=None is DiffusionGemma's uniform-noise mode; our policies commit "
                             "masked positions (see unmasker.gemma for DiffusionGemma)")
        if top_p is not None or top_k is not None:
            raise ValueError(f"top_p={top_p!r}, top_k={top_k!r}: not supported; the policy reads the "
                             "confidences of the unfiltered distribution")
        if sampling_method not in ("auto", "greedy", "multinomial"):
            raise ValueError(f"sampling_method={sampling_method!r}: expected 'auto', 'greedy' or 'multinomial'")
        step_index = int(timestep.item()) if isinstance(timestep, torch.Tensor) else int(timestep)
        B, BL = sample.shape
        device = sample.device
        keep = torch.ones(BL, dtype=torch.bool, device=device)
        if prompt_mask is not None:
            keep = ~prompt_mask.to(device=device, dtype=torch.bool)
        window = sample[:, keep]  # the block without its prompt positions: what the policy sees
        masked = window == mask_token_id
        if self.nfe is None:
            self.nfe = torch.zeros(B, dtype=torch.long, device=device)
            self.forced = torch.zeros(B, dtype=torch.long, device=device)
            self._finished = torch.zeros(B, dtype=torch.bool, device=device)
        if step_index == 0 or self._block_step is None:  # a new block
            self._block_step = torch.zeros(B, dtype=torch.long, device=device)
            self._block_masked = masked.sum(-1)

        temp = 0.0 if sampling_method == "greedy" else float(temperature)
        reads = features_read(self.unmask_policy)
        f = step_features(model_output[:, keep], mask_token_id, temp, generator, reads)
        active = masked.any(-1) & ~self._finished
        eligible = masked & active[:, None]
        ctx = StepContext(
            **context_features(f, reads, type(self.unmask_policy).__name__, self._eos_ids),
            masked=masked, eligible=eligible, t=self.nfe.float() / self.config.gen_length,
            block_step=self._block_step.clone(), block_masked=self._block_masked,
            block_length=int(keep.sum()), gen_length=self.config.gen_length, generator=self._generator,
        )
        commit = self.unmask_policy.select(ctx)
        _check_action(commit, eligible, self.unmask_policy)
        if step_index >= self.num_inference_steps - 1:
            # The pipeline leaves a block after num_inference_steps steps; commit what is left, as
            # BlockRefinementScheduler's schedule does, and count it in `forced` (never silently).
            left = eligible & ~commit
            if left.any():
                logger.warning("block budget of %d steps exhausted: committing %d masked positions at once",
                               self.num_inference_steps, int(left.sum()))
                self.forced += left.sum(-1)
                commit = commit | left
        self.nfe += active.long()
        self._block_step += active.long()
        self.forward_passes += 1

        transfer_index = torch.zeros_like(sample, dtype=torch.bool)
        transfer_index[:, keep] = commit
        sampled_tokens, sampled_probs = sample.clone(), torch.zeros(sample.shape, device=device)
        sampled_tokens[:, keep] = f.proposals
        sampled_probs[:, keep] = f.token_prob
        prev_sample = torch.where(transfer_index, sampled_tokens, sample)
        self._left_masked = (prev_sample == mask_token_id) & keep
        editing = torch.zeros_like(transfer_index)
        if not return_dict:
            return prev_sample, transfer_index, editing, sampled_tokens, sampled_probs, model_output
        return UnmaskSchedulerOutput(prev_sample=prev_sample, transfer_index=transfer_index,
                                     editing_transfer_index=editing, sampled_tokens=sampled_tokens,
                                     sampled_probs=sampled_probs, pred_logits=model_output)

    # The pipeline asks the scheduler these two questions after every step.
    check_eos_finished = staticmethod(BlockRefinementScheduler.check_eos_finished)

    def check_block_should_continue(self, step_idx: int, masks_remaining: bool, editing_enabled: bool,
                                    editing_transfer_index: torch.BoolTensor, post_steps: int,
                                    max_post_steps: int, finished: torch.BoolTensor) -> bool:
        """Continue while an unfinished row still has masks in the block and budget is left. Unlike
        BlockRefinementScheduler, no pass is spent after the last mask is filled: nothing is ever
        edited, so that pass could not change a token."""
        self._finished = finished.to(torch.bool).clone()
        if bool(finished.all()) or step_idx >= self.num_inference_steps:
            return False
        if self._left_masked is None:
            return bool(masks_remaining)
        return bool((self._left_masked & ~self._finished.to(self._left_masked.device)[:, None]).any())


class DLLMPipelineModel(torch.nn.Module):
    """A `DLLM` as the model `LLaDA2Pipeline` calls: ``model(ids, attention_mask=, position_ids=)``
    returning ``.logits`` (B, T, V). It uses `DLLM.logits`, so Dream's logits are shifted back in
    place and position ids come from the attention mask (left padding is invisible, as in
    `iter_unmask`); the pipeline's `position_ids` are ignored for that reason. A Hugging Face
    masked LM such as the embedded BERT also works in the pipeline directly, for unpadded prompts."""

    def __init__(self, dllm: DLLM):
        super().__init__()
        self.dllm = dllm
        self.model = dllm.model  # registered, so .to() and the pipeline's device lookup see it

    @property
    def device(self) -> torch.device:
        return self.dllm.device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None) -> SimpleNamespace:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        return SimpleNamespace(logits=self.dllm.logits(input_ids, attention_mask))
