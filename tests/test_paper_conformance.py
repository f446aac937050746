"""Conformance of the learned policy with the paper's own code (apple/ml-rl-dllm).

The authors' policy network (`DiTConfidencePolicy`), their generation loop (`generate_unified`)
and their Bernoulli log-likelihood (`bernoulli_batch_loglik`) are read from
`../shared/thirdparty/ml-rl-dllm` (kept outside this repository, unmodified; these tests skip
when it is absent; `UNMASKER_ML_RL_DLLM` points elsewhere). Nothing of it is copied here.

What is compared, with the paper's configs (hidden 128, FFN 512, 2 heads, 1 block, `full_context`):

* the same weights give the same logits, once two documented differences are accounted for
  (docs/policies.md, "The paper's own code"): their RoPE pairs channels (2i, 2i+1) where ours pairs
  (i, i + d/2), a fixed permutation of the q/k projection rows; and their time embedding is
  rounded to bfloat16 (their `sinusoidal_time_embedding` default), ours stays float32;
* our Bernoulli log-likelihood equals theirs on the same actions (theirs clamps p to
  [eps, 1 - eps], which only shows for |logit| > ~16: pinned);
* a whole greedy trajectory of their `generate_unified` with a policy equals ours, token for token
  and NFE for NFE, in full diffusion and semi-AR. The policy's draws are made deterministic by
  scaling the output layer so every probability is exactly 0 or 1 in float32, and the empty-draw
  fallback (their `bernoulli-argmax`, our `fallback=True`) is the same argmax rule.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import pytest
import torch

PAPER = Path(os.environ.get("UNMASKER_ML_RL_DLLM")
             or Path(__file__).resolve().parents[2] / "shared" / "thirdparty" / "ml-rl-dllm")

pytestmark = pytest.mark.skipif(
    not (PAPER / "common" / "models" / "policy.py").is_file(),
    reason=f"the paper's own code (apple/ml-rl-dllm: common/models/policy.py, common/generation/) is not at "
           f"{PAPER}; it is kept outside this repository (set UNMASKER_ML_RL_DLLM to use another copy)")

# the paper's configs (limits-and-peers.md section 6)
HIDDEN, FFN, HEADS, BLOCKS = 128, 512, 2, 1


@pytest.fixture(scope="module")
def paper():
    """Their modules, imported from the third-party folder (on sys.path only for this module)."""
    if "common" in sys.modules:
        pytest.skip(f"another package named 'common' is already imported ({sys.modules['common']})")
    sys.path.insert(0, str(PAPER))
    try:
        import common.generation.generation as generation
        import common.generation.sampling as sampling
        import common.models.policy as policy
        import common.models.policy_layers as layers
    finally:
        sys.path.remove(str(PAPER))
    yield {"policy": policy, "layers": layers, "generation": generation, "sampling": sampling}
    # their top-level package is called `common`: do not leave it importable by that name for other tests
    for name in [m for m in sys.modules if m == "common" or m.startswith("common.")]:
        del sys.modules[name]


@pytest.fixture
def fp32_time_embedding(paper, monkeypatch):
    """Their time embedding without the bfloat16 rounding (for exact comparisons)."""
    pol = paper["policy"]
    monkeypatch.setattr(pol, "sinusoidal_time_embedding",
                        functools.partial(paper["layers"].sinusoidal_time_embedding, dtype=torch.float32))


def _their_net(paper, seed=0):
    torch.manual_seed(seed)
    net = paper["policy"].DiTConfidencePolicy(hidden_dim=HIDDEN, feedforward_dim=FFN, num_heads=HEADS,
                                              num_blocks=BLOCKS, time_embed_dim=HIDDEN, smart_init=-2.0,
                                              time_period=1.0)
    # smart init zeroes the adaLN layers; give every weight a random value so each one is exercised
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "norm" in name:  # LayerNorm scales near 1, so the output is not squashed
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn_like(p))
            else:
                p.normal_(0.0, 0.15)
    return net.eval()


def _rope_rows(d_model: int, n_heads: int) -> torch.Tensor:
    """Row order taking their q/k projection to ours: within each head, our channel j < d/2 is their
    channel 2j and our j >= d/2 is their 2(j - d/2) + 1 (interleaved vs rotate-half RoPE)."""
    hd = d_model // n_heads
    within = torch.cat([torch.arange(0, hd, 2), torch.arange(1, hd, 2)])
    return torch.cat([h * hd + within for h in range(n_heads)])


def their_state_to_ours(state: dict, d_model=HIDDEN, n_heads=HEADS, permute_rope=True) -> dict:
    """Their DiTConfidencePolicy state dict -> our ConfidencePolicyNet's (names, and the RoPE rows)."""
    rows = _rope_rows(d_model, n_heads) if permute_rope else torch.arange(d_model)
    out = {
        "conf_proj.weight": state["confidence_proj.weight"], "conf_proj.bias": state["confidence_proj.bias"],
        "mask_emb.weight": state["mask_embedding.weight"],
        "norm.weight": state["final_norm.weight"], "norm.bias": state["final_norm.bias"],
        "out.weight": state["output_proj.weight"], "out.bias": state["output_proj.bias"],
    }
    for i in (0, 2):
        out[f"time_mlp.{i}.weight"], out[f"time_mlp.{i}.bias"] = state[f"time_mlp.{i}.weight"], state[f"time_mlp.{i}.bias"]
    for b in range(BLOCKS):
        src, dst = f"transformer_blocks.{b}.", f"blocks.{b}."
        names = {"norm1": "ln1", "norm2": "ln2", "v_proj": "v", "out_proj": "o", "linear1": "ffn.0",
                 "linear2": "ffn.2", "ada_conditioning": "ada"}
        for theirs, ours in names.items():
            for kind in ("weight", "bias"):
                out[f"{dst}{ours}.{kind}"] = state[f"{src}{theirs}.{kind}"]
        for theirs, ours in (("q_proj", "q"), ("k_proj", "k")):
            out[f"{dst}{ours}.weight"] = state[f"{src}{theirs}.weight"][rows]
            out[f"{dst}{ours}.bias"] = state[f"{src}{theirs}.bias"][rows]
    return out


def _our_net_from(their_net, **kw):
    from unmasker.policies.learned import ConfidencePolicyNet

    ours = ConfidencePolicyNet(d_model=HIDDEN, n_heads=HEADS, d_ffn=FFN, n_blocks=BLOCKS, time_period=1.0)
    ours.load_state_dict(their_state_to_ours(their_net.state_dict(), **kw), strict=True)
    return ours.eval()


def _inputs(B=3, L=24, seed=1):
    g = torch.Generator().manual_seed(seed)
    conf = torch.rand(B, L, generator=g)
    masked = torch.rand(B, L, generator=g) < 0.6
    t = torch.tensor([0.0, 5 / L, 17 / L])[:B]
    return conf, masked, t


def _their_logits(net, conf, masked, t):
    return net(masked, conf[..., None], t[:, None])


def test_same_weights_same_logits(paper, fp32_time_embedding):
    theirs = _their_net(paper)
    ours = _our_net_from(theirs)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    conf, masked, t = _inputs()
    with torch.no_grad():
        a, b = ours(conf, masked, t), _their_logits(theirs, conf, masked, t)
    assert a.shape == b.shape == conf.shape
    assert a.std() > 0.1  # the comparison is not between two near-constant outputs
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_rope_layout_differs_without_the_row_permutation(paper, fp32_time_embedding):
    """Pins the RoPE difference: loaded without the q/k row permutation, the logits differ."""
    theirs = _their_net(paper)
    plain = _our_net_from(theirs, permute_rope=False)
    conf, masked, t = _inputs()
    with torch.no_grad():
        diff = (plain(conf, masked, t) - _their_logits(theirs, conf, masked, t)).abs().max()
    assert diff > 1e-3


def test_their_bf16_time_embedding_is_a_small_pinned_difference(paper):
    """Their default rounds the time embedding to bfloat16: logits move by a little, never more."""
    theirs = _their_net(paper)
    ours = _our_net_from(theirs)
    conf, masked, t = _inputs()
    with torch.no_grad():
        diff = (ours(conf, masked, t) - _their_logits(theirs, conf, masked, t)).abs().max()
    assert 1e-6 < diff < 5e-2


def test_bernoulli_loglik_equals_theirs(paper):
    from unmasker.policies.learned import bernoulli_log_prob

    g = torch.Generator().manual_seed(3)
    # |logit / tau| <= 8: theirs takes log(1 - sigmoid(z)) in float32, which loses digits beyond that
    logits = (torch.randn(4, 32, generator=g) * 2).clamp(-4, 4)
    actions = torch.rand(4, 32, generator=g) < 0.4
    eligible = torch.rand(4, 32, generator=g) < 0.7
    for tau in (1.0, 0.5):
        theirs = paper["sampling"].bernoulli_batch_loglik(actions, logits / tau, eligible, dtype=torch.float32)
        ours = bernoulli_log_prob(logits, actions, eligible, temperature=tau)
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-3)
        assert ours.abs().min() > 1.0  # sums over many positions, not empty rows
    # gradients agree too (GRPO differentiates this)
    z = logits.clone().requires_grad_(True)
    bernoulli_log_prob(z, actions, eligible).sum().backward()
    z2 = logits.clone().requires_grad_(True)
    paper["sampling"].bernoulli_batch_loglik(actions, z2, eligible, dtype=torch.float32).sum().backward()
    torch.testing.assert_close(z.grad, z2.grad, rtol=1e-4, atol=1e-5)


def test_bernoulli_loglik_clamp_is_pinned(paper):
    """Theirs clamps p to [eps, 1 - eps] (eps = 2^-23): an action against a logit of 30 costs them
    log(eps) ~ -15.9, us the exact -30. Only |logit| > ~16 is affected."""
    from unmasker.policies.learned import bernoulli_log_prob

    logits = torch.tensor([[30.0, -30.0]])
    actions = torch.tensor([[False, True]])
    eligible = torch.ones(1, 2, dtype=torch.bool)
    ours = bernoulli_log_prob(logits, actions, eligible)
    theirs = paper["sampling"].bernoulli_batch_loglik(actions, logits, eligible, dtype=torch.float32)
    torch.testing.assert_close(ours, torch.tensor([-60.0]), rtol=1e-5, atol=1e-4)
    assert -33.0 < float(theirs) < -31.0  # 2 x log(2^-23) = -31.9


# -- whole trajectories ---------------------------------------------------------------------------
class _TheirModel:
    """Their loop calls model(x, attention_mask=..., output_hidden_states=...).logits. We give it our
    dLLM's logits with the mask id excluded, as our sampler does (docs/real-models.md: the mask token is never
    proposed); everything else (argmax, softmax, top-1 confidence) is their code."""

    def __init__(self, dllm):
        self.dllm = dllm

    def __call__(self, x, attention_mask=None, output_hidden_states=False):
        logits = self.dllm.logits(x, torch.ones_like(x)).clone()
        logits[..., self.dllm.mask_id] = float("-inf")
        return type("Out", (), {"logits": logits})()


def _decisive_pair(paper, scale, bias, seed):
    """Their network and ours with the same weights, the output layer scaled so that every
    probability sigmoid(b / tau) is exactly 0 or 1 in float32 (|b| > ~104): both samplers then
    draw the same actions whatever their random streams."""
    theirs = _their_net(paper, seed)
    with torch.no_grad():
        theirs.output_proj.weight.mul_(scale)
        theirs.output_proj.bias.fill_(bias)
    theirs.policy_type = "dit_confidence"
    return theirs, _our_net_from(theirs)


@pytest.mark.parametrize("L,BL,bias,tau", [(24, 24, 0.0, 1.0), (24, 8, 0.0, 0.5), (16, 16, -1e6, 1.0),
                                           (16, 4, 30.0, 0.5)])
def test_trajectory_equals_generate_unified(paper, fp32_time_embedding, tiny_dllm, L, BL, bias, tau):
    """Greedy dLLM, the same policy weights: their generate_unified (policy remasking,
    bernoulli-argmax, full_context as in the paper's configs) and our generate give the same tokens
    and NFE. bias -1e6 makes every draw empty (the fallback alone decides each step)."""
    import unmasker
    from unmasker.policies.learned import LearnedPolicy

    theirs, ours = _decisive_pair(paper, scale=1e5, bias=bias, seed=L + BL)
    prompts = ["sort : 15 3 9 1", "how many apples has the 12 ?"]
    for text in prompts:  # one prompt at a time: their loop takes no left padding here
        ids, att = tiny_dllm.encode([text])
        ref = paper["generation"].generate_unified(
            _TheirModel(tiny_dllm), ids, remasking="policy", policy=theirs, gen_length=L, block_length=BL,
            temperature=0.0, mask_id=tiny_dllm.mask_id, sampling_mode="bernoulli-argmax", full_context=True,
            temperature_policy=tau)
        traj = unmasker.generate(tiny_dllm, LearnedPolicy(net=ours, temperature=tau, fallback=True), (ids, att),
                                 unmasker.SamplerConfig(gen_length=L, block_length=BL), seed=7)
        assert traj.tokens.tolist() == ref.sequences[:, ids.shape[1]:].tolist()
        assert traj.nfe.tolist() == ref.steps_taken.tolist()
        if bias < -1e3:  # fallback only: one position per pass
            assert traj.nfe.tolist() == [L]
        else:
            assert 1 <= traj.nfe.item() < L  # the policy committed several positions in some pass


def test_their_default_block_context_differs_in_semi_ar(paper, fp32_time_embedding, tiny_dllm):
    """Pins what `full_context: true` means: with their default (the policy sees only the current
    block, positions renumbered from 0) a semi-AR trajectory need not equal ours, which always shows
    the policy the whole canvas. Asserted only as 'the policy inputs differ in shape'."""
    theirs, _ = _decisive_pair(paper, scale=1e5, bias=0.0, seed=3)
    ids, _ = tiny_dllm.encode(["sort : 15 3 9 1"])
    ref = paper["generation"].generate_unified(
        _TheirModel(tiny_dllm), ids, remasking="policy", policy=theirs, gen_length=16, block_length=4,
        temperature=0.0, mask_id=tiny_dllm.mask_id, sampling_mode="bernoulli-argmax", full_context=False)
    assert ref.policy_inputs[1].shape[-2] == 4  # (B, T, BL, 1): the block only


def test_smart_init_is_theirs(paper):
    """Our default init is their `apply_smart_init(-2)`: identity adaLN (zero modulation) and output
    bias -2, so sigmoid(-2) ~ 0.12 per position at the start (paper 2.4); same parameter count."""
    from unmasker.policies.learned import ConfidencePolicyNet

    theirs = paper["policy"].DiTConfidencePolicy(hidden_dim=HIDDEN, feedforward_dim=FFN, num_heads=HEADS,
                                                 num_blocks=BLOCKS, time_embed_dim=HIDDEN, smart_init=-2.0)
    ours = ConfidencePolicyNet()
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters()) == 331_265
    for blk_o, blk_t in zip(ours.blocks, theirs.transformer_blocks):
        assert not blk_o.ada.weight.any() and not blk_t.ada_conditioning.weight.any()
        assert not blk_o.ada.bias.any() and not blk_t.ada_conditioning.bias.any()
    assert float(ours.out.bias) == float(theirs.output_proj.bias) == -2.0
