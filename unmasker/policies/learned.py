"""The paper's Lightweight Confidence Policy (section 2) and its Bernoulli action head.

`ConfidencePolicyNet` maps per-position (top-1 confidence, mask bit) plus the time index
t = NFE / L to one logit per generation position. It never sees tokens or the prompt.
`LearnedPolicy` wraps it as an `UnmaskPolicy`: u ~ Bernoulli(sigmoid(b / tau)) on eligible
positions, with the test-time fallback and beta scaling, and exposes `log_prob` for GRPO.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from .base import StepContext

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


def sinusoidal(t: torch.Tensor, dim: int, max_period: float) -> torch.Tensor:
    """(B,) -> (B, dim) [cos(t f), sin(t f)], f_i = max_period^(-i / half). With the paper's
    max_period = 1 every frequency is 1 (degenerate but exact, paper 2.2)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def rope(x: torch.Tensor, base: float) -> torch.Tensor:
    """Rotary embedding over positions 0..L-1 of x (B, H, L, D), rotate-half form."""
    L, d = x.shape[-2], x.shape[-1]
    inv = 1.0 / (base ** (torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d))
    ang = torch.arange(L, device=x.device, dtype=torch.float32)[:, None] * inv[None]  # (L, d/2)
    cos, sin = torch.cos(ang).to(x.dtype), torch.sin(ang).to(x.dtype)
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class DiTBlock(nn.Module):
    """Pre-LN transformer block with adaLN (6 modulations, (1 + gate) residual gates), RoPE,
    bidirectional attention over the L positions."""

    def __init__(self, d_model: int, n_heads: int, d_ffn: int, rope_base: float):
        super().__init__()
        self.n_heads, self.rope_base = n_heads, rope_base
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.q, self.k, self.v, self.o = (nn.Linear(d_model, d_model) for _ in range(4))
        self.ffn = nn.Sequential(nn.Linear(d_model, d_ffn), nn.GELU(), nn.Linear(d_ffn, d_model))
        self.ada = nn.Linear(d_model, 6 * d_model)  # no SiLU before it (paper 2.3)

    def attn(self, x):
        B, L, D = x.shape
        split = lambda t: t.view(B, L, self.n_heads, D // self.n_heads).transpose(1, 2)
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        q, k = rope(q, self.rope_base), rope(k, self.rope_base)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.o(y.transpose(1, 2).reshape(B, L, D))

    def forward(self, x, cond):
        g1, b1, a1, g2, b2, a2 = self.ada(cond).chunk(6, dim=-1)
        x = x + (1 + a1) * self.attn(self.ln1(x) * (1 + g1) + b1)
        return x + (1 + a2) * self.ffn(self.ln2(x) * (1 + g2) + b2)


class ConfidencePolicyNet(nn.Module, PyTorchModelHubMixin):
    """(confidence (B, L), masked (B, L), t (B,)) -> logits (B, L). 331,265 parameters by default."""

    def __init__(self, d_model: int = 128, n_heads: int = 2, d_ffn: int = 512, n_blocks: int = 1,
                 time_period: float = 1.0, rope_base: float = 10000.0, init_bias: float = -2.0):
        super().__init__()
        if d_model % (2 * n_heads):
            raise ValueError(f"d_model={d_model} must be divisible by 2 * n_heads={2 * n_heads}")
        self.d_model, self.time_period = d_model, time_period
        self.conf_proj = nn.Linear(1, d_model)
        self.mask_emb = nn.Embedding(2, d_model)
        self.time_mlp = nn.Sequential(nn.Linear(d_model, d_model), nn.SiLU(), nn.Linear(d_model, d_model))
        self.blocks = nn.ModuleList(DiTBlock(d_model, n_heads, d_ffn, rope_base) for _ in range(n_blocks))
        self.norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, 1)
        # "Smart init" (paper 2.4): identity modulation and sigmoid(-2) ~ 0.12 unmask probability.
        for blk in self.blocks:
            nn.init.zeros_(blk.ada.weight)
            nn.init.zeros_(blk.ada.bias)
        nn.init.constant_(self.out.bias, init_bias)

    def forward(self, confidence: torch.Tensor, masked: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        dtype = self.out.weight.dtype
        cond = self.mask_emb(masked.long()) + self.time_mlp(sinusoidal(t, self.d_model, self.time_period).to(dtype))[:, None]
        x = self.conf_proj(confidence.to(dtype)[..., None])
        for blk in self.blocks:
            x = blk(x, cond)
        return self.out(self.norm(x)).squeeze(-1)


def bernoulli_log_prob(logits: torch.Tensor, actions: torch.Tensor, eligible: torch.Tensor,
                       temperature: float = 1.0) -> torch.Tensor:
    """log pi(u) = sum over eligible k of u log s + (1 - u) log(1 - s), s = sigmoid(b / tau).
    (B, L) -> (B,), computed in fp32 (paper 3.1)."""
    z = logits.float() / temperature
    ll = torch.where(actions.bool(), F.logsigmoid(z), F.logsigmoid(-z))
    return (ll * eligible.float()).sum(-1)


def load_policy_net(path: str) -> nn.Module:
    """Load a checkpoint folder (config.json + model.safetensors) with a clear error if it is not one:
    the paper's `ConfidencePolicyNet`, or a `FilterNet` (policies/filter.py) when the config says so."""
    if not os.path.isdir(path):
        raise ValueError(f"policy checkpoint {path!r} is not a folder")
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not os.path.isfile(os.path.join(path, name)):
            raise ValueError(f"policy checkpoint {path!r} has no {name}")
    try:
        with open(os.path.join(path, CONFIG_NAME)) as f:
            cfg = json.load(f)
        if cfg.get("family") is not None:  # another learned family (Learn2PD's filter); the paper's has none
            from .filter import FAMILY, FilterNet
            if cfg["family"] != FAMILY:
                raise ValueError(f"unknown policy family {cfg['family']!r}; known: {FAMILY!r} (and the paper's, "
                                 "whose config has no family)")
            net = FilterNet(**cfg)
        else:
            unknown = set(cfg) - {"d_model", "n_heads", "d_ffn", "n_blocks", "time_period", "rope_base", "init_bias"}
            if unknown:
                raise ValueError(f"unexpected config keys {sorted(unknown)}")
            net = ConfidencePolicyNet(**cfg)
        from safetensors.torch import load_file
        state = load_file(os.path.join(path, WEIGHTS_NAME))
        net.load_state_dict(state, strict=True)
    except Exception as err:  # noqa: BLE001 - every failure becomes one clear message
        raise ValueError(f"policy checkpoint {path!r} cannot be loaded: {err}") from err
    return net.eval()


@dataclass(frozen=True)
class LearnedPolicy:
    """The learned unmasking policy: u_k ~ Bernoulli(min(1, beta * sigmoid(b_k / temperature)))
    on eligible positions. With `fallback`, an empty action commits the eligible position with the
    largest logit (test time, paper 2.5); training uses no fallback. `min_confidence` is a
    test-time floor (ours, not the paper's): when some drawn positions have top-1 confidence at or
    above it, only those are committed; a step whose draws are all below it commits them as drawn.
    `decision_threshold` replaces the draw by a deterministic rule, u_k = [min(1, beta * s_k) >= threshold]
    (Learn2PD's filter rule, policies/filter.py). The network is the paper's or Learn2PD's filter."""
    reads = frozenset({"confidence"})  # the features it looks at (policies/base.py features_read)

    checkpoint: str | None = field(default=None, metadata={"help": "policy folder (random init if empty)"})
    temperature: float = field(default=1.0, metadata={"help": "policy temperature tau > 0 (paper: 0.5 semi-AR, 1 full)"})
    beta: float = field(default=1.0, metadata={"help": "test-time scaling: u ~ Ber(min(1, beta * s)), beta > 0"})
    fallback: bool = field(default=True, metadata={"help": "commit the top-logit position when nothing is drawn"})
    min_confidence: float = field(default=0.0, metadata={
        "help": "test-time floor in [0, 1): if some drawn positions reach it, commit only those (needs fallback)"})
    decision_threshold: float = field(default=0.0, metadata={
        "help": "deterministic rule in [0, 1): commit where the probability reaches it (0 = draw, the paper's)"})
    seed: int = field(default=0, metadata={"help": "init seed when no checkpoint is given"})
    net: nn.Module | None = field(default=None, repr=False, compare=False,
                                           metadata={"help": "(python only) an existing network"})

    def __post_init__(self):
        if not (isinstance(self.temperature, (int, float)) and self.temperature > 0 and math.isfinite(self.temperature)):
            raise ValueError(f"temperature={self.temperature!r}: must be a finite number > 0")
        if not (isinstance(self.beta, (int, float)) and self.beta > 0 and math.isfinite(self.beta)):
            raise ValueError(f"beta={self.beta!r}: must be a finite number > 0")
        mc = self.min_confidence
        if not (isinstance(mc, (int, float)) and not isinstance(mc, bool) and 0 <= mc < 1):
            raise ValueError(f"min_confidence={mc!r}: must be a number in [0, 1)")
        th = self.decision_threshold
        if not (isinstance(th, (int, float)) and not isinstance(th, bool) and 0 <= th < 1):
            raise ValueError(f"decision_threshold={th!r}: must be a number in [0, 1) (0 = draw from the Bernoulli)")
        if mc > 0 and not self.fallback:
            raise ValueError(f"min_confidence={mc!r} needs fallback=True: the floor is a test-time knob, and "
                             "fallback=False is the training-time policy, whose draws GRPO scores unfloored")
        if self.net is None:
            if self.checkpoint:
                net = load_policy_net(self.checkpoint)
            else:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(self.seed)
                    net = ConfidencePolicyNet().eval()
            object.__setattr__(self, "net", net)

    def logits(self, ctx: StepContext) -> torch.Tensor:
        net = self.net
        if next(net.parameters()).device != ctx.confidence.device:
            net.to(ctx.confidence.device)
        with torch.no_grad():
            return net(ctx.confidence, ctx.masked, ctx.t).float()

    def probs(self, logits: torch.Tensor) -> torch.Tensor:
        return (self.beta * torch.sigmoid(logits / self.temperature)).clamp(max=1.0)

    def select(self, ctx: StepContext) -> torch.Tensor:
        trained_for = getattr(self.net, "block_length", None)
        if trained_for is not None and trained_for != ctx.block_length:
            raise ValueError(f"this policy's filter reads blocks of {trained_for}; the sampler runs blocks of "
                             f"{ctx.block_length} (use a filter trained at that block length)")
        b = self.logits(ctx)
        p = self.probs(b)
        if self.decision_threshold > 0:
            u = p >= self.decision_threshold
        else:
            u = torch.rand(p.shape, generator=ctx.generator, device="cpu").to(p.device) < p
        u = u & ctx.eligible
        if self.min_confidence > 0:  # keep the confident draws; a row with none keeps its draw as it is
            sure = u & (ctx.confidence >= self.min_confidence)
            u = torch.where(sure.any(-1, keepdim=True), sure, u)
        if self.fallback:
            stalled = ctx.eligible.any(-1) & ~u.any(-1)
            if stalled.any():
                neg = torch.finfo(b.dtype).min
                best = torch.where(ctx.eligible, b, torch.full_like(b, neg)).argmax(-1)
                u[stalled, best[stalled]] = True
        return u

    def log_prob(self, confidence, masked, t, actions, eligible) -> torch.Tensor:
        """Differentiable log-likelihood (B,) of `actions` under the current network (no beta,
        no fallback: the training-time distribution)."""
        return bernoulli_log_prob(self.net(confidence, masked, t), actions, eligible, self.temperature)
