"""Records of one sampling run (`Step`, `Trajectory`) and pure view helpers for UIs and reports.

A `Step` is what the sampler yields after each forward pass; a `Trajectory` is the finished run.
Nothing here touches a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class Step:
    """One denoising step for a batch. B = batch, L = generation length.

    index: global step number (0-based). block: index of the current block.
    committed: (B, L) bool, positions unmasked in this step.
    tokens: (B, L) long, the generation canvas after the step (mask id where still masked).
    proposals: (B, L) long, the dLLM's proposed token everywhere (argmax or Gumbel sample).
    confidence / token_prob / margin / entropy: (B, L) float, as in `StepContext`.
    masked: (B, L) bool, masked before the step. eligible: (B, L) bool, what the policy could pick.
    t: (B,) float, NFE / L before the step. active: (B,) bool, whether this step cost the sample an NFE.
    nfe: (B,) long, NFE after the step. elapsed: seconds since the run began.
    top_ids / top_probs: (B, L, K) alternatives when requested, else None.
    margin / entropy are None when neither the policy reads them nor the config records them.
    filled: (B, L) bool, positions the end-of-text early stop filled with EOS this step (None when off).
    """

    index: int
    block: int
    committed: torch.Tensor
    tokens: torch.Tensor
    proposals: torch.Tensor
    confidence: torch.Tensor
    token_prob: torch.Tensor
    margin: torch.Tensor | None
    entropy: torch.Tensor | None
    masked: torch.Tensor
    eligible: torch.Tensor
    t: torch.Tensor
    active: torch.Tensor
    nfe: torch.Tensor
    elapsed: float
    top_ids: torch.Tensor | None = None
    top_probs: torch.Tensor | None = None
    filled: torch.Tensor | None = None


@dataclass
class Trajectory:
    """A finished run. tokens: (B, L) final generation; nfe: (B,); unmask_step: (B, L) the step
    index at which each position was committed (-1 if it never was); texts: decoded answers."""

    prompt_ids: torch.Tensor
    tokens: torch.Tensor
    nfe: torch.Tensor
    unmask_step: torch.Tensor
    texts: list[str]
    mask_id: int
    elapsed: float
    steps: list[Step] = field(default_factory=list)

    @property
    def still_masked(self) -> torch.Tensor:
        """(B,) positions left masked (only possible without the fallback, e.g. in RL)."""
        return (self.tokens == self.mask_id).sum(-1)


def tokens_per_step(traj: Trajectory, row: int = 0) -> list[int]:
    """How many positions were committed at each step of sample `row`."""
    return [int(s.committed[row].sum()) for s in traj.steps if bool(s.active[row])]


def canvas_at(steps: list[Step], upto: int, row: int = 0) -> list[tuple[int, str]]:
    """State of each generation position after step `upto` for sample `row`: a list of
    (token id, status) with status in {'masked', 'new', 'old'}."""
    step = steps[upto]
    out = []
    for pos, tok in enumerate(step.tokens[row].tolist()):
        if step.committed[row, pos] or (step.filled is not None and step.filled[row, pos]):
            out.append((tok, "new"))
        elif step.masked[row, pos]:
            out.append((tok, "masked"))
        else:
            out.append((tok, "old"))
    return out


def decode_order(traj: Trajectory, row: int = 0) -> list[int]:
    """Per position, the step at which it was unmasked (-1 = never)."""
    return traj.unmask_step[row].tolist()
