"""Lean step features (issue 24): the chunked, read-what-you-need `step_features` gives exactly the
numbers of the one-shot version it replaced; policies declare what they read, with a safe default."""

import dataclasses

import pytest
import torch

from unmasker import SamplerConfig, build_policy, generate
from unmasker import features as F
from unmasker.policies import POLICIES
from unmasker.policies.base import FEATURES, NotComputed, features_read

PROMPTS = ["sort : 15 3 9", "Mia has 12 apples . She buys 3 more . How many apples does Mia have now ?"]


def reference_features(logits, mask_id, temperature, generator, top_k=0):
    """The pre-issue-24 `step_features` (one fp32 copy, full softmax, everything), verbatim."""
    logits = logits.clone() if logits.dtype == torch.float32 else logits.float()
    logits[..., mask_id] = float("-inf")
    probs = torch.softmax(logits, dim=-1)
    if temperature == 0:
        proposals = logits.argmax(-1)
    else:
        l64 = logits.to(torch.float64)
        u = torch.rand(l64.shape, generator=generator, dtype=torch.float64, device=l64.device).clamp(min=1e-300)
        proposals = (l64.exp() / (-torch.log(u)) ** temperature).argmax(-1)
    top2 = probs.topk(2, dim=-1).values
    token_prob = probs.gather(-1, proposals[..., None]).squeeze(-1)
    entropy = -(probs * torch.log(probs.clamp(min=1e-30))).sum(-1)
    top = probs.topk(top_k, dim=-1) if top_k else (None, None)
    return dict(proposals=proposals, confidence=top2[..., 0], token_prob=token_prob, margin=top2[..., 0] - top2[..., 1],
                entropy=entropy, top_probs=top[0], top_ids=top[1])


@pytest.mark.parametrize("chunk", [1 << 24, 3 * 50, 50 * 7 + 3])  # one chunk; several rows' positions; split rows
@pytest.mark.parametrize("temperature", [0.0, 0.8])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_lean_features_equal_the_one_shot_version(monkeypatch, chunk, temperature, dtype):
    monkeypatch.setattr(F, "CHUNK_ELEMENTS", chunk)
    logits = (torch.randn(3, 7, 50, generator=torch.Generator().manual_seed(1)) * 4).to(dtype)
    before = logits.clone()
    ref = reference_features(logits, 5, temperature, torch.Generator().manual_seed(7), top_k=3)
    got = F.step_features(logits, 5, temperature, torch.Generator().manual_seed(7), frozenset(FEATURES), top_k=3)
    assert torch.equal(logits, before)  # the caller's logits are untouched
    for name, value in ref.items():
        assert torch.equal(getattr(got, name), value), name
    assert not (got.proposals == 5).any()


def test_only_what_is_asked_is_computed():
    logits = torch.randn(2, 4, 30)
    ref = reference_features(logits, 0, 0.0, None)
    f = F.step_features(logits, 0, 0.0, None, frozenset({"token_prob"}))
    assert f.margin is None and f.entropy is None and f.top_ids is None
    for name in ("proposals", "confidence", "token_prob"):  # always computed, same numbers
        assert torch.equal(getattr(f, name), ref[name])
    f = F.step_features(logits, 0, 0.0, None, frozenset({"entropy"}))
    assert f.margin is None and torch.equal(f.entropy, ref["entropy"])


class NoDeclaration:
    """A policy class written without `reads` (e.g. a new heuristic in another file)."""

    def select(self, ctx):
        s = ctx.margin - 0.01 * ctx.entropy
        first = torch.where(ctx.eligible, s, torch.full_like(s, -1e9)).argmax(-1)
        return ctx.eligible & (torch.arange(s.shape[1])[None] == first[:, None])


class Liar(NoDeclaration):
    reads = frozenset({"token_prob"})  # but reads margin


def test_a_policy_without_a_declaration_reads_everything(tiny_dllm):
    assert features_read(NoDeclaration()) == frozenset(FEATURES)
    traj = generate(tiny_dllm, NoDeclaration(), PROMPTS, SamplerConfig(8, 4), keep_steps=True)
    assert traj.still_masked.tolist() == [0, 0]
    assert all(s.margin is not None and s.entropy is not None for s in traj.steps)


def test_declared_policies_get_lean_steps_and_record_features_restores_them(tiny_dllm):
    policy = build_policy("top_k_confidence", k=2)
    assert features_read(policy) == {"token_prob"}
    lean = generate(tiny_dllm, policy, PROMPTS, SamplerConfig(8, 4), keep_steps=True)
    full = generate(tiny_dllm, policy, PROMPTS, SamplerConfig(8, 4, record_features=True), keep_steps=True)
    assert all(s.margin is None and s.entropy is None for s in lean.steps)
    assert all(s.margin is not None and s.entropy is not None for s in full.steps)
    assert torch.equal(lean.tokens, full.tokens) and torch.equal(lean.nfe, full.nfe)
    for a, b in zip(lean.steps, full.steps):
        assert torch.equal(a.confidence, b.confidence) and torch.equal(a.token_prob, b.token_prob)


def test_reading_an_undeclared_feature_is_a_clear_error(tiny_dllm):
    with pytest.raises(AttributeError, match=r"ctx\.(margin|entropy) was not computed: Liar does not list"):
        generate(tiny_dllm, Liar(), PROMPTS, SamplerConfig(8, 4))
    nc = NotComputed("entropy", "P")
    for use in (lambda: -nc, lambda: torch.where(torch.ones(2, dtype=torch.bool), nc, torch.zeros(2)),
                lambda: nc.dtype, lambda: nc[0], lambda: nc * 2):
        with pytest.raises(AttributeError, match="ctx.entropy was not computed"):
            use()


@pytest.mark.parametrize("reads, message", [("margin", "not one string"), ({"margin", "logits"}, "unknown features")])
def test_bad_declarations_are_rejected(reads, message):
    class Bad(NoDeclaration):
        pass

    Bad.reads = reads
    with pytest.raises(ValueError, match=message):
        features_read(Bad())


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_every_registered_policy_declares_what_it_reads(tiny_dllm, name):
    """Declared policies run with NotComputed in every undeclared slot: a missing name fails here."""
    policy = build_policy(name)
    assert getattr(type(policy), "reads", None) is not None, f"{name} declares no `reads`"
    cfg = dataclasses.replace(SamplerConfig(12, 4), temperature=0.5)
    assert generate(tiny_dllm, policy, PROMPTS, cfg).still_masked.tolist() == [0, 0]
