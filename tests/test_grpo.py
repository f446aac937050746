import json
import math
import os

import pytest
import torch

from training import grpo
from training.train_policy import LEGACY_STATE_FILE, STATE_FILE, PolicyTrainConfig, load_state, save_state, train


def test_multiplicative_reward_hand_numbers():
    r = grpo.multiplicative_reward(torch.tensor([1, 1, 0]), torch.tensor([1, 48, 10]), L=48, alpha=1.0)
    assert torch.allclose(r, torch.tensor([1.0, 1 / 48, 0.0]))
    r2 = grpo.multiplicative_reward(torch.tensor([1]), torch.tensor([25]), L=48, alpha=2.0)
    assert r2.item() == pytest.approx(0.25)  # ((48 - 25 + 1) / 48)^2 = 0.5^2
    r0 = grpo.multiplicative_reward(torch.tensor([1, 0]), torch.tensor([48, 3]), L=48, alpha=0.0)
    assert r0.tolist() == [1.0, 0.0]  # alpha = 0: pure correctness


def test_additive_reward_hand_numbers():
    r = grpo.additive_reward(torch.tensor([1, 0]), torch.tensor([24, 12]), L=48, alpha=1.0)
    assert r.tolist() == [0.5, -0.25]


def test_group_advantages_subtract_group_mean_without_std():
    a = grpo.group_advantages(torch.tensor([1.0, 0, 0, 1, 0.5, 0.5, 0.5, 0.5]), group_size=4)
    assert a.tolist() == [0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0]
    b = grpo.group_advantages(torch.tensor([3.0, 1.0]), group_size=2)
    assert b.tolist() == [1.0, -1.0]  # not divided by the std (which would give +-0.707)
    with pytest.raises(ValueError, match="groups of 3"):
        grpo.group_advantages(torch.zeros(4), group_size=3)


def test_clipped_surrogate_hand_numbers():
    # rollout 0: A = +1, ratios 2.0 and 0.8 -> min(2, 1.5) = 1.5 and 0.8 -> mean 1.15
    # rollout 1: A = -1, ratio 0.2 then an inactive step -> min(-0.2, -0.5) = -0.5
    # loss = -(1.15 - 0.5) / 2 = -0.325
    ratios = torch.tensor([[2.0, 0.2], [0.8, 1.0]])
    logp_old = torch.tensor([[-1.0, -2.0], [-0.5, -0.3]])
    logp_new = logp_old + torch.log(ratios)
    active = torch.tensor([[True, True], [True, False]])
    loss = grpo.clipped_surrogate_loss(logp_new, logp_old, torch.tensor([1.0, -1.0]), active, epsilon=0.5)
    assert loss.item() == pytest.approx(-0.325, abs=1e-6)


def test_surrogate_gradient_is_zero_outside_the_clip_range():
    logp_old = torch.zeros(1, 1)
    logp_new = torch.log(torch.tensor([[2.0]])).requires_grad_()
    loss = grpo.clipped_surrogate_loss(logp_new, logp_old, torch.tensor([1.0]), torch.ones(1, 1, dtype=torch.bool), 0.5)
    loss.backward()
    assert logp_new.grad.abs().item() == 0.0  # clipped: positive advantage, ratio above 1 + eps


def test_mixture_log_prob_hand_numbers():
    # pi = 0.5, G = 8, E = 1: 8/9 * 0.5 + 1/9 = 5/9
    out = grpo.mixture_log_prob(torch.tensor([math.log(0.5)]), n_policy=8, n_expert=1)
    assert out.item() == pytest.approx(math.log(5 / 9))
    # a near-impossible expert action still has probability >= 1/(G+E): the ratio stays bounded
    tiny = grpo.mixture_log_prob(torch.tensor([-1000.0]), 8, 1)
    assert tiny.item() == pytest.approx(math.log(1 / 9))


def test_sequence_log_probs_match_direct_bernoulli():
    from unmasker.policies.learned import ConfidencePolicyNet

    torch.manual_seed(0)
    net = ConfidencePolicyNet()
    S, N, L = 2, 3, 5
    conf = torch.rand(S, N, L)
    masked = torch.rand(S, N, L) > 0.3
    elig = masked.clone()
    elig[1, 2] = False  # an inactive timestep
    acts = (torch.rand(S, N, L) > 0.5) & elig
    batch = grpo.RolloutBatch(conf, masked, torch.rand(S, N), elig, acts, torch.zeros(N, L, dtype=torch.long),
                              torch.zeros(N, dtype=torch.long), [""] * N)
    logp, entropy = grpo.sequence_log_probs(net, batch)
    with torch.no_grad():
        for s in range(S):
            for n in range(N):
                s_k = torch.sigmoid(net(conf[s, n][None], masked[s, n][None], batch.t[s, n][None])[0])
                expect = sum(math.log(s_k[k]) if acts[s, n, k] else math.log(1 - s_k[k])
                             for k in range(L) if elig[s, n, k])
                assert logp[s, n].item() == pytest.approx(expect, abs=1e-4)
    assert 0 < entropy <= math.log(2)


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="alpha"):
        PolicyTrainConfig(alpha=-1)
    with pytest.raises(ValueError, match="reward"):
        PolicyTrainConfig(reward="sum")
    with pytest.raises(ValueError, match="group_size"):
        PolicyTrainConfig(group_size=1)
    with pytest.raises(ValueError, match="threshold"):
        PolicyTrainConfig(expert_threshold=1.5)


def _smoke_cfg(model, out, **kw):
    base = dict(model=model, output_dir=out, task="sorting", prompts_per_step=2, group_size=4,
                eval_problems=4, eval_every=1, save_every=1, reward="additive", alpha=1.0, max_steps=1,
                train_temperature=10.0)  # near-uniform actions: NFE varies, so advantages are nonzero
    return PolicyTrainConfig(**{**base, **kw})


def test_two_step_training_smoke_and_resume(tiny_model_dir, tmp_path):
    from unmasker.policies.learned import ConfidencePolicyNet, load_policy_net

    out = str(tmp_path / "policy")
    train(_smoke_cfg(tiny_model_dir, out, max_steps=1))
    state = load_state(os.path.join(out, STATE_FILE))
    assert state["state"]["step"] == 1
    # resume: a second call with a larger budget continues from step 1, not from scratch
    result = train(_smoke_cfg(tiny_model_dir, out, max_steps=2))
    assert result["step"] == 2
    records = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    assert [r["step"] for r in records] == [1, 2]
    assert all(r["loss"] is None or math.isfinite(r["loss"]) for r in records)
    assert any(r["loss"] is not None for r in records)  # additive reward: NFE differs, so no skip
    # parameters changed from the seeded smart init
    torch.manual_seed(123)
    init = ConfidencePolicyNet().state_dict()
    final = load_state(os.path.join(out, STATE_FILE))["net"]
    assert any(not torch.equal(init[k], final[k]) for k in init)
    # the shipped checkpoint reloads and its card says what it is
    net = load_policy_net(out)
    assert sum(p.numel() for p in net.parameters()) == 331265
    card = json.load(open(os.path.join(out, "card.json")))
    assert card["task"] == "sorting" and card["reward"] == "additive"
    assert card["train_command"].startswith("python -m training.train_policy")


def _assert_not_a_pickle(path):
    """safetensors and nothing else: an 8-byte header length, a JSON header, then exactly the raw
    bytes of the tensors it lists (no room for a pickle), and not torch.save's zip."""
    import zipfile

    raw = open(path, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    end = max(v["data_offsets"][1] for k, v in header.items() if k != "__metadata__")
    assert len(raw) == 8 + n + end
    assert json.loads(header["__metadata__"]["train_state"])["config"]  # the rest is JSON
    assert not zipfile.is_zipfile(path)


def test_resume_state_is_data_and_round_trips(tmp_path):
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5)
    for _ in range(3):
        net(torch.randn(4, 3)).pow(2).sum().backward()
        opt.step()
        sched.step()
    payload = {"net": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
               "config": {"alpha": 0.3, "task": "sorting"},
               "state": {"step": 3, "best": -float("inf"), "best_eval": {"accuracy": 0.5}}}
    path = str(tmp_path / "state.safetensors")
    save_state(path, payload)
    _assert_not_a_pickle(path)
    back = load_state(path)
    assert back["config"] == payload["config"] and back["state"] == payload["state"]
    assert back["sched"] == sched.state_dict()
    assert all(torch.equal(back["net"][k], v) for k, v in net.state_dict().items())
    # the optimiser continues exactly where it was: same next step from a fresh copy
    net2 = torch.nn.Linear(3, 2)
    net2.load_state_dict(back["net"])
    opt2 = torch.optim.AdamW(net2.parameters(), lr=1e-3)
    opt2.load_state_dict(back["opt"])
    assert opt2.param_groups[0]["betas"] == (0.9, 0.99) and opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    x = torch.randn(4, 3)
    for n, o in ((net, opt), (net2, opt2)):
        o.zero_grad()
        n(x).pow(2).sum().backward()
        o.step()
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), net2.parameters()))


def test_training_writes_data_only_state_and_reads_a_legacy_one_safely(tiny_model_dir, tmp_path):
    out = str(tmp_path / "policy")
    train(_smoke_cfg(tiny_model_dir, out, max_steps=1, eval_every=5))
    _assert_not_a_pickle(os.path.join(out, STATE_FILE))
    # an older run's torch.save pickle of plain tensors resumes (read with weights_only) and is replaced
    legacy = os.path.join(out, LEGACY_STATE_FILE)
    torch.save(load_state(os.path.join(out, STATE_FILE)), legacy)
    os.remove(os.path.join(out, STATE_FILE))
    assert train(_smoke_cfg(tiny_model_dir, out, max_steps=2, eval_every=5))["step"] == 2
    assert not os.path.exists(legacy) and os.path.exists(os.path.join(out, STATE_FILE))
    # a pickle that would run code on load is refused before anything runs
    marker = tmp_path / "ran"
    torch.save({"config": {}, "evil": _RunsCode(str(marker))}, legacy)
    os.remove(os.path.join(out, STATE_FILE))
    with pytest.raises(ValueError, match="not loaded"):
        train(_smoke_cfg(tiny_model_dir, out, max_steps=3, eval_every=5))
    assert not marker.exists()


class _RunsCode:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):  # unpickling calls open(path, "w"): creates the marker file
        return open, (self.path, "w")


def test_resume_refuses_a_different_configuration(tiny_model_dir, tmp_path):
    out = str(tmp_path / "policy")
    train(_smoke_cfg(tiny_model_dir, out, max_steps=1, eval_every=5))
    with pytest.raises(ValueError, match="different configuration"):
        train(_smoke_cfg(tiny_model_dir, out, max_steps=2, alpha=3.0))


def test_expert_steering_round_runs(tiny_model_dir, tmp_path):
    out = str(tmp_path / "es")
    result = train(_smoke_cfg(tiny_model_dir, out, full_diffusion=True, expert_steering=True,
                              expert_block_length=4, eval_every=5))
    assert result["step"] == 1
    rec = json.loads(open(os.path.join(out, "metrics.jsonl")).readline())
    assert "expert_accuracy" in rec
