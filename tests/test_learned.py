"""The learned policy (paper section 2): network size and init, the Bernoulli head with temperature,
beta scaling and the test-time fallback, the GRPO log-likelihood, and checkpoint round trips."""

import json
import math
import os

import pytest
import torch
from torch import nn

from unmasker.policies import LearnedPolicy
from unmasker.policies.base import StepContext
from unmasker.policies.learned import ConfidencePolicyNet, bernoulli_log_prob, load_policy_net


class FixedNet(nn.Module):
    """Stands in for ConfidencePolicyNet: returns preset logits (B, L) whatever the input."""

    def __init__(self, logits):
        super().__init__()
        self.register_buffer("b", torch.tensor(logits, dtype=torch.float32))
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, confidence, masked, t):
        return self.b.expand(confidence.shape[0], -1) if self.b.dim() == 1 else self.b


def ctx_for(eligible, seed=0) -> StepContext:
    eligible = torch.as_tensor(eligible, dtype=torch.bool)
    B, L = eligible.shape
    z = torch.zeros(B, L)
    return StepContext(confidence=z, token_prob=z, margin=z, entropy=z, masked=eligible.clone(), eligible=eligible,
                       t=torch.zeros(B), block_step=torch.zeros(B, dtype=torch.long), block_masked=eligible.sum(-1),
                       block_length=L, gen_length=L, generator=torch.Generator().manual_seed(seed))


def random_inputs(B=3, L=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, L, generator=g), torch.rand(B, L, generator=g) < 0.5, torch.rand(B, generator=g)


def test_parameter_count_matches_paper():
    net = ConfidencePolicyNet()
    assert sum(p.numel() for p in net.parameters()) == 331_265   # paper 2.4, exact count


def test_smart_init():
    torch.manual_seed(0)
    net = ConfidencePolicyNet().eval()
    for blk in net.blocks:  # identity adaLN modulation
        assert torch.count_nonzero(blk.ada.weight) == 0 and torch.count_nonzero(blk.ada.bias) == 0
    assert torch.all(net.out.bias == -2.0)
    assert torch.count_nonzero(net.out.weight) > 0   # output weight keeps its random init (paper 2.4)
    conf, masked, t = random_inputs()
    with torch.no_grad():
        b = net(conf, masked, t)
        # the bias alone sets the initial unmask probability to sigmoid(-2) = 0.119 ...
        nn.init.zeros_(net.out.weight)
        b0 = net(conf, masked, t)
    assert torch.allclose(torch.sigmoid(b0), torch.full_like(b0, 1 / (1 + math.e ** 2)))
    # ... and the random output weight only moves it around that value
    assert 0.03 < torch.sigmoid(b).mean().item() < 0.3


def test_forward_shapes_and_dtype():
    net = ConfidencePolicyNet()
    conf, masked, t = random_inputs(B=2, L=7)
    assert net(conf.double(), masked, t).shape == (2, 7)  # inputs cast to the policy dtype


# -- the Bernoulli head -------------------------------------------------------------------------------
def test_fallback_commits_the_top_logit_eligible_position():
    # sigmoid(-20) ~ 2e-9: nothing is drawn; pos 3 has the largest logit but is not eligible
    logits = [[-30.0, -20.0, -25.0, -10.0], [-30.0, -20.0, -25.0, -10.0], [-1.0, -1.0, -1.0, -1.0]]
    eligible = [[1, 1, 1, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    with_fb = LearnedPolicy(net=FixedNet(logits)).select(ctx_for(eligible))
    assert with_fb[0].tolist() == [False, True, False, False]
    assert with_fb[1].tolist() == [False, False, True, False]
    assert not with_fb[2].any()   # nothing eligible: nothing committed, even with the fallback
    without = LearnedPolicy(net=FixedNet(logits), fallback=False).select(ctx_for(eligible))
    assert not without.any()


def test_draws_only_eligible_and_no_fallback_when_something_is_drawn():
    L = 200
    eligible = torch.zeros(1, L, dtype=torch.bool)
    eligible[0, 50:150] = True
    u = LearnedPolicy(net=FixedNet([0.0] * L)).select(ctx_for(eligible))
    assert not (u & ~eligible).any()
    assert 30 < int(u.sum()) < 70   # ~ Ber(0.5) on 100 positions; fallback adds nothing


def test_temperature_sharpens_and_flattens():
    b = torch.full((1, 4000), 0.5)
    for tau, s in [(0.5, 1 / (1 + math.exp(-1.0))), (1.0, 1 / (1 + math.exp(-0.5))), (2.0, 1 / (1 + math.exp(-0.25)))]:
        pol = LearnedPolicy(net=FixedNet(b[0].tolist()), temperature=tau, fallback=False)
        assert torch.allclose(pol.probs(b), torch.full_like(b, s))
        freq = pol.select(ctx_for(torch.ones(1, 4000))).float().mean().item()
        assert abs(freq - s) < 0.03
    # tau -> small: negative logits are almost never drawn, positive ones almost always
    sharp = LearnedPolicy(net=FixedNet([-1.0, 1.0] * 500), temperature=0.05, fallback=False)
    u = sharp.select(ctx_for(torch.ones(1, 1000)))
    assert not u[0, 0::2].any() and u[0, 1::2].all()


def test_beta_scaling():
    b = torch.zeros(1, 4000)   # s = 0.5
    half = LearnedPolicy(net=FixedNet(b[0].tolist()), beta=0.5, fallback=False)
    assert torch.allclose(half.probs(b), torch.full_like(b, 0.25))
    assert abs(half.select(ctx_for(torch.ones(1, 4000))).float().mean().item() - 0.25) < 0.03
    triple = LearnedPolicy(net=FixedNet(b[0].tolist()), beta=3.0, fallback=False)
    assert torch.all(triple.probs(b) == 1.0)   # min(1, 3 * 0.5)
    assert triple.select(ctx_for(torch.ones(1, 4000))).all()


def test_min_confidence_floor_keeps_only_the_confident_draws():
    # logits +30: every eligible position is drawn
    ctx = ctx_for([[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 1, 1]])
    conf = torch.tensor([[0.9, 0.2, 0.5, 0.6], [0.1, 0.3, 0.2, 0.95], [0.9, 0.1, 0.2, 0.3]])
    ctx = StepContext(**{**ctx.__dict__, "confidence": conf})
    logits = [[30.0, 30.0, 30.0, 30.0], [30.0, 30.0, 30.0, 30.0], [-30.0, 30.0, 30.0, -30.0]]
    u = LearnedPolicy(net=FixedNet(logits), min_confidence=0.5).select(ctx)
    assert u[0].tolist() == [True, False, True, True]    # the floor 0.5 drops the 0.2
    # row 1: no eligible draw reaches the floor (the 0.95 is not eligible): the draw stands as drawn
    assert u[1].tolist() == [True, True, True, False]
    # row 2: the confident 0.9 was not drawn, the drawn 0.1 and 0.2 are below the floor: committed as drawn
    assert u[2].tolist() == [False, True, True, False]
    # the floor 0 is the policy as trained
    assert LearnedPolicy(net=FixedNet(logits)).select(ctx)[0].all()


@pytest.mark.parametrize("kw", [{"min_confidence": 1.0}, {"min_confidence": -0.1}, {"min_confidence": True},
                                {"min_confidence": 0.5, "fallback": False}])
def test_min_confidence_is_validated(kw):
    with pytest.raises(ValueError, match="min_confidence"):
        LearnedPolicy(net=FixedNet([0.0]), **kw)


def test_select_is_seeded():
    pol = LearnedPolicy(net=FixedNet([0.0] * 64))
    assert torch.equal(pol.select(ctx_for(torch.ones(2, 64), seed=5)), pol.select(ctx_for(torch.ones(2, 64), seed=5)))
    assert not torch.equal(pol.select(ctx_for(torch.ones(2, 64), seed=5)),
                           pol.select(ctx_for(torch.ones(2, 64), seed=6)))


@pytest.mark.parametrize("kw, field", [({"temperature": 0}, "temperature"), ({"temperature": float("inf")}, "temperature"),
                                       ({"beta": 0}, "beta"), ({"beta": -1.0}, "beta")])
def test_parameters_are_validated(kw, field):
    with pytest.raises(ValueError, match=field):
        LearnedPolicy(net=FixedNet([0.0]), **kw)


# -- the GRPO log-likelihood ---------------------------------------------------------------------------
def test_bernoulli_log_prob_by_hand():
    # s = sigmoid(b) = 0.5, 0.75, 0.25
    b = torch.tensor([[0.0, math.log(3), -math.log(3)]])
    u = torch.tensor([[1, 0, 1]])
    full = torch.tensor([[1, 1, 1]])
    assert bernoulli_log_prob(b, u, full).item() == pytest.approx(math.log(0.5 * 0.25 * 0.25), abs=1e-6)
    # ineligible positions contribute nothing
    assert bernoulli_log_prob(b, u, torch.tensor([[1, 0, 1]])).item() == pytest.approx(math.log(0.5 * 0.25), abs=1e-6)
    # tau = 0.5 doubles the logits: s = 0.5, 0.9, 0.1
    assert bernoulli_log_prob(b, u, full, temperature=0.5).item() == pytest.approx(math.log(0.5 * 0.1 * 0.1), abs=1e-6)


def test_log_prob_is_differentiable():
    torch.manual_seed(0)
    pol = LearnedPolicy(seed=0)
    conf, masked, t = random_inputs(B=2, L=8)
    actions = torch.rand(2, 8) < 0.3
    lp = pol.log_prob(conf, masked, t, actions, masked)
    assert lp.shape == (2,)
    lp.sum().backward()
    assert pol.net.out.bias.grad is not None and torch.isfinite(pol.net.out.bias.grad).all()


# -- checkpoints -----------------------------------------------------------------------------------------
def _trained_looking_net(seed=0) -> ConfidencePolicyNet:
    torch.manual_seed(seed)
    net = ConfidencePolicyNet()
    with torch.no_grad():   # move the adaLN weights off zero so the round trip checks them too
        for p in net.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return net.eval()


def test_save_load_round_trip_gives_identical_logits(tmp_path):
    net = _trained_looking_net()
    net.save_pretrained(str(tmp_path))
    loaded = load_policy_net(str(tmp_path))
    conf, masked, t = random_inputs()
    with torch.no_grad():
        assert torch.equal(net(conf, masked, t), loaded(conf, masked, t))
        via_policy = LearnedPolicy(checkpoint=str(tmp_path))
        assert torch.equal(via_policy.net(conf, masked, t), net(conf, masked, t))


def test_round_trip_keeps_a_non_default_config(tmp_path):
    net = ConfidencePolicyNet(d_model=32, n_heads=2, d_ffn=64, init_bias=-3.0)
    net.save_pretrained(str(tmp_path))
    loaded = load_policy_net(str(tmp_path))
    assert loaded.d_model == 32 and torch.all(loaded.out.bias == -3.0)


def test_corrupt_or_mismatched_checkpoints_fail_clearly(tmp_path):
    good = tmp_path / "good"
    _trained_looking_net().save_pretrained(str(good))

    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text((good / "config.json").read_text())
    (corrupt / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="cannot be loaded"):
        load_policy_net(str(corrupt))

    mismatched = tmp_path / "mismatched"
    mismatched.mkdir()
    cfg = json.loads((good / "config.json").read_text())
    (mismatched / "config.json").write_text(json.dumps({**cfg, "d_model": 64}))
    (mismatched / "model.safetensors").write_bytes((good / "model.safetensors").read_bytes())
    with pytest.raises(ValueError, match=r"(?s)cannot be loaded.*size mismatch"):
        load_policy_net(str(mismatched))

    unknown = tmp_path / "unknown"
    unknown.mkdir()
    (unknown / "config.json").write_text(json.dumps({**cfg, "hidden": 3}))
    (unknown / "model.safetensors").write_bytes((good / "model.safetensors").read_bytes())
    with pytest.raises(ValueError, match="unexpected config keys"):
        load_policy_net(str(unknown))

    os.remove(good / "model.safetensors")
    with pytest.raises(ValueError, match="has no model.safetensors"):
        load_policy_net(str(good))
    with pytest.raises(ValueError, match="not a folder"):
        load_policy_net(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="cannot be loaded"):
        LearnedPolicy(checkpoint=str(corrupt))
