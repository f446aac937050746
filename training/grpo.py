"""GRPO pieces for unmasking policies, as pure functions (paper section 3, section 7).

Rewards, group advantages, the clipped per-timestep surrogate and the expert-steering mixture
likelihood are tested against hand-computed numbers. Rollouts go through the one sampling loop
(`unmasker.iter_unmask`), lean as everywhere: the learned policy declares it reads only the
confidence, so no margin or entropy is computed, and `config.cache` / `config.eos_early_stop`
apply as they do for evaluation; this module only records what the loop yields.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from unmasker.sampler import SamplerConfig, iter_unmask


def multiplicative_reward(correct: torch.Tensor, nfe: torch.Tensor, L: int, alpha: float) -> torch.Tensor:
    """R = correct * ((L - min(NFE, L) + 1) / L)^alpha (paper 3.3; the +1 keeps R > 0 at NFE = L)."""
    speed = (L - nfe.clamp(max=L) + 1).float() / L
    return correct.float() * speed.pow(alpha)


def additive_reward(correct: torch.Tensor, nfe: torch.Tensor, L: int, alpha: float) -> torch.Tensor:
    """Ablation: R = correct - alpha * NFE / L (the paper reports it collapses to minimal NFE)."""
    return correct.float() - alpha * nfe.float() / L


REWARDS = {"multiplicative": multiplicative_reward, "additive": additive_reward}


def group_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """A = R - mean of its group (no std division, Dr-GRPO style; paper 3.1). (N,) -> (N,),
    groups are consecutive blocks of `group_size`."""
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    r = rewards.view(-1, group_size).float()
    return (r - r.mean(-1, keepdim=True)).view(-1)


def clipped_surrogate_loss(logp_new: torch.Tensor, logp_old: torch.Tensor, advantages: torch.Tensor,
                           active: torch.Tensor, epsilon: float) -> torch.Tensor:
    """-mean_rollouts[ sum_t min(rho A, clip(rho, 1-eps, 1+eps) A) / #active_t ].

    logp_*: (S, N) per-timestep joint log-likelihoods; advantages: (N,); active: (S, N) bool,
    timesteps with at least one eligible position. Rollouts with no active step are ignored.
    """
    ratio = torch.exp(logp_new - logp_old)
    a = advantages[None, :]
    obj = torch.minimum(ratio * a, ratio.clamp(1 - epsilon, 1 + epsilon) * a) * active
    n_active = active.sum(0)
    keep = n_active > 0
    per_rollout = obj.sum(0)[keep] / n_active[keep]
    return -per_rollout.mean()


def mixture_log_prob(logp_policy: torch.Tensor, n_policy: int, n_expert: int) -> torch.Tensor:
    """Expert steering (paper 7): the expert rollout is scored under
    pi_ES = G/(G+E) pi + 1/(G+E) delta_expert, i.e. logaddexp(log(G/(G+E)) + log pi, log(1/(G+E)))."""
    total = n_policy + n_expert
    return torch.logaddexp(logp_policy + math.log(n_policy / total),
                           torch.full_like(logp_policy, math.log(1.0 / total)))


@dataclass
class RolloutBatch:
    """Per-timestep policy inputs and actions of N rollouts. S = steps, N = rollouts, L = length."""

    confidence: torch.Tensor  # (S, N, L) float
    masked: torch.Tensor      # (S, N, L) bool
    t: torch.Tensor           # (S, N) float
    eligible: torch.Tensor    # (S, N, L) bool: positions whose decision is scored
    actions: torch.Tensor     # (S, N, L) bool
    tokens: torch.Tensor      # (N, L) final generation
    nfe: torch.Tensor         # (N,)
    texts: list
    proposals: torch.Tensor | None = None  # (S, N, L) long, the loop's proposals (`keep_proposals`)

    @property
    def active(self) -> torch.Tensor:
        return self.eligible.any(-1)


def rollout(dllm, policy, prompts, config: SamplerConfig, seed: int, score_all_masked: bool = False,
            keep_proposals: bool = False) -> RolloutBatch:
    """Run the sampler once and record what GRPO needs. `score_all_masked` scores every masked
    position of the sequence instead of the block's eligible ones (expert steering: the policy
    learns to mimic the expert block-agnostically, paper 7). `keep_proposals` also records the
    proposals (what the oracle's labels compare, training/distill.py)."""
    rec = {k: [] for k in ("confidence", "masked", "t", "eligible", "actions")}
    if keep_proposals:
        rec["proposals"] = []
    last = None
    try:
        for step in iter_unmask(dllm, policy, prompts, config, seed):
            scored = (step.masked & step.active[:, None]) if score_all_masked else step.eligible
            rec["confidence"].append(step.confidence.cpu())
            rec["masked"].append(step.masked.cpu())
            rec["t"].append(step.t.cpu())
            rec["eligible"].append(scored.cpu())
            rec["actions"].append(step.committed.cpu())
            if keep_proposals:
                rec["proposals"].append(step.proposals.cpu())
            last = step
    except torch.OutOfMemoryError as err:
        n = len(prompts[0]) if isinstance(prompts, tuple) else len(prompts)
        raise torch.OutOfMemoryError(
            f"out of memory in a rollout of {n} sequences x gen_length {config.gen_length}: lower "
            "--prompts_per_step or --group_size (sequences per round = prompts_per_step x group_size), "
            f"or --gen_length ({err})") from err
    tokens, nfe = last.tokens.cpu(), last.nfe.cpu()
    return RolloutBatch(**{k: torch.stack(v) for k, v in rec.items()}, tokens=tokens, nfe=nfe,
                        texts=dllm.decode(tokens))


def concat_rollouts(a: RolloutBatch, b: RolloutBatch) -> RolloutBatch:
    """Join two batches along N, padding the shorter in S with inactive steps."""
    S = max(a.t.shape[0], b.t.shape[0])

    def pad(x, s):
        if x.shape[0] == s:
            return x
        filler = torch.zeros((s - x.shape[0],) + tuple(x.shape[1:]), dtype=x.dtype)
        return torch.cat([x, filler])

    fields = {}
    for k in ("confidence", "masked", "t", "eligible", "actions"):
        fields[k] = torch.cat([pad(getattr(a, k), S), pad(getattr(b, k), S)], dim=1)
    return RolloutBatch(**fields, tokens=torch.cat([a.tokens, b.tokens]), nfe=torch.cat([a.nfe, b.nfe]),
                        texts=a.texts + b.texts)


def sequence_log_probs(net, batch: RolloutBatch, temperature: float = 1.0):
    """Per-timestep joint Bernoulli log-likelihoods (S, N) of the recorded actions under `net`,
    and the mean Bernoulli entropy over scored positions (a scalar, for logging).

    One forward pass over all scored timesteps (DDP expects one forward per backward)."""
    from unmasker.policies.learned import bernoulli_log_prob

    S, N, L = batch.confidence.shape
    device = next(net.parameters()).device
    flat = lambda x: x.reshape(S * N, *x.shape[2:]).to(device)
    conf, masked, t, act, elig = map(flat, (batch.confidence, batch.masked, batch.t, batch.actions, batch.eligible))
    live = elig.any(-1).nonzero().squeeze(-1)  # only timesteps that are scored
    logits = net(conf[live], masked[live], t[live]).float()
    vals = bernoulli_log_prob(logits, act[live], elig[live], temperature)
    out = torch.zeros(S * N, device=device).index_put((live,), vals)
    with torch.no_grad():
        p = torch.sigmoid(logits / temperature)
        h = -(p * torch.log(p.clamp(min=1e-12)) + (1 - p) * torch.log((1 - p).clamp(min=1e-12)))
        entropy = (h * elig[live]).sum() / elig[live].sum().clamp(min=1)
    return out.view(S, N), float(entropy)
