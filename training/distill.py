"""Oracle-distilled warm start (issue 21): the paper's policy network learns by supervision to
imitate the oracle (training/oracle.py), DAgger-style, before GRPO.

One round: decode the round's prompts one token per step (the oracle's reference, final tokens f),
roll out a policy through the one sampling loop (the oracle itself in round 0, the current
network afterwards, so it sees the states it will meet; Ross et al. 2011), label every visited
state with the oracle's decision (each eligible position whose proposal already equals f:
`oracle_targets`), add the states to the aggregate and fit the network with a masked BCE on its
logits. The oracle's fallback (the most confident position when nothing matches) is not a target:
the learned policy has its own fallback at test time (paper 2.5), so only the match set is learned.

Pure pieces only (labels, loss, statistics, one round's states); the stage itself, its optimiser,
its resumable state and its log live in training/train_policy.py.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from . import grpo
from .oracle import oracle_targets

# A learned policy at this temperature commits the positions with logit > 0, i.e. sigmoid(b) > 0.5,
# with the usual fallback: the "greedy threshold 0.5" policy whose NFE the stage logs (the tau -> 0
# limit: in fp32 sigmoid(b / tau) is exactly 1 for b > 0.02 and below 1e-8 for b < -0.02).
GREEDY_TEMPERATURE = 1e-3


@dataclass
class States:
    """Labelled policy inputs, one row per visited (state, sample) with at least one eligible
    position. n = rows, L = gen length."""

    confidence: torch.Tensor  # (n, L) float
    masked: torch.Tensor      # (n, L) bool
    t: torch.Tensor           # (n,) float
    eligible: torch.Tensor    # (n, L) bool: the positions with a target
    target: torch.Tensor      # (n, L) bool: the oracle commits this position now

    def __len__(self) -> int:
        return self.t.shape[0]

    def cat(self, other: "States") -> "States":
        return States(**{f.name: torch.cat([getattr(self, f.name), getattr(other, f.name)]) for f in fields(self)})

    def take(self, idx: torch.Tensor) -> "States":
        return States(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name).contiguous() for f in fields(self)}

    @classmethod
    def from_tensors(cls, d: dict[str, torch.Tensor]) -> "States":
        return cls(**{f.name: d[f.name] for f in fields(cls)})


def label_states(batch: grpo.RolloutBatch, final_tokens: torch.Tensor) -> States:
    """The visited states of `batch` (recorded with keep_proposals) with the oracle's targets
    against final tokens (N, L) of the reference decode of the same prompts."""
    if batch.proposals is None:
        raise ValueError("label_states needs a rollout recorded with keep_proposals=True")
    target = oracle_targets(batch.proposals, batch.eligible, final_tokens[None])
    S, N, L = batch.confidence.shape
    flat = lambda x: x.reshape(S * N, *x.shape[2:])  # noqa: E731
    live = flat(batch.eligible).any(-1)
    return States(confidence=flat(batch.confidence)[live].float(), masked=flat(batch.masked)[live],
                  t=flat(batch.t)[live].float(), eligible=flat(batch.eligible)[live], target=flat(target)[live])


def collect(dllm, policy, prompts, config, final_tokens: torch.Tensor, seed: int) -> tuple[States, grpo.RolloutBatch]:
    """Roll `policy` out on `prompts` through the one loop and label what it visited."""
    batch = grpo.rollout(dllm, policy, prompts, config, seed, keep_proposals=True)
    return label_states(batch, final_tokens), batch


def _logits(net, states: States) -> torch.Tensor:
    device = next(net.parameters()).device
    return net(states.confidence.to(device), states.masked.to(device), states.t.to(device)).float()


def _masked_bce(logits: torch.Tensor, states: States, temperature: float) -> torch.Tensor:
    elig = states.eligible.to(logits.device)
    per = F.binary_cross_entropy_with_logits(logits / temperature, states.target.to(logits.device).float(),
                                             reduction="none")
    return (per * elig).sum() / elig.sum().clamp(min=1)


def bce_loss(net, states: States, temperature: float = 1.0) -> torch.Tensor:
    """Mean over eligible positions of BCE(sigmoid(b / tau), target), b = net's logits (n, L):
    the Bernoulli likelihood of the oracle's action under the policy GRPO then samples from."""
    return _masked_bce(_logits(net, states), states, temperature)


@torch.no_grad()
def imitation_stats(net, states: States, temperature: float = 1.0, chunk: int = 4096) -> dict:
    """BCE, agreement (share of eligible positions where logit > 0 equals the oracle's target) and
    the oracle's commit rate, over `states`."""
    n_elig = bce_sum = agree = pos = 0.0
    for i in range(0, len(states), chunk):
        part = states.take(slice(i, i + chunk))
        elig = part.eligible.sum().item()
        b = _logits(net, part)
        bce_sum += _masked_bce(b, part, temperature).item() * elig
        agree += ((b.cpu() > 0) == part.target)[part.eligible].sum().item()
        pos += part.target[part.eligible].sum().item()
        n_elig += elig
    n = max(n_elig, 1)
    return {"bce": bce_sum / n, "agreement": agree / n, "oracle_commit_rate": pos / n, "positions": int(n_elig)}


def fit(net, opt, states: States, steps: int, batch_size: int, generator: torch.Generator,
        temperature: float = 1.0, max_grad_norm: float | None = None, backward=None, clip=None) -> list[float]:
    """`steps` AdamW steps on minibatches of `batch_size` states drawn with `generator` (with
    replacement). `backward` / `clip`: the Accelerator's (defaults: plain torch). Returns the losses."""
    backward = backward or (lambda loss: loss.backward())
    clip = clip or torch.nn.utils.clip_grad_norm_
    losses = []
    for _ in range(steps):
        idx = torch.randint(len(states), (min(batch_size, len(states)),), generator=generator)
        loss = bce_loss(net, states.take(idx), temperature)
        backward(loss)
        if max_grad_norm:
            clip(net.parameters(), max_grad_norm)
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    return losses
