"""The oracle-distilled warm start (training/distill.py, `train_policy --distill_rounds`): labels
against hand computations, the BCE fit, resumption after an interruption, and a distilled policy
run by the one loop. Tiny configurations only (the tiny random model, 2 prompts, a few steps)."""

import json
import os

import pytest
import torch

from training import distill, grpo
from training.train_policy import DISTILL_STATES_FILE, STATE_FILE, PolicyTrainConfig, load_state, train


def _batch(proposals, eligible, confidence=None):
    """A RolloutBatch from nested lists (S, N, L); only what labelling reads is meaningful."""
    prop = torch.tensor(proposals)
    S, N, L = prop.shape
    elig = torch.tensor(eligible)
    conf = torch.rand(S, N, L) if confidence is None else torch.tensor(confidence)
    return grpo.RolloutBatch(confidence=conf, masked=elig.clone(), t=torch.arange(S)[:, None].expand(S, N).float() / L,
                             eligible=elig, actions=torch.zeros(S, N, L, dtype=torch.bool),
                             tokens=torch.zeros(N, L, dtype=torch.long), nfe=torch.zeros(N), texts=[""] * N,
                             proposals=prop)


def test_labels_equal_a_hand_computation():
    final = torch.tensor([[5, 6, 7, 8], [1, 2, 3, 4]])
    # step 0: row 0 proposes 5 . 9 8 (matches at 0 and 3, 3 not eligible), row 1 matches at 1 and 2
    # step 1: row 0 matches at 1; row 1 has nothing eligible (finished): no state
    batch = _batch(proposals=[[[5, 9, 9, 8], [0, 2, 3, 9]], [[0, 6, 0, 0], [1, 2, 3, 4]]],
                   eligible=[[[True, True, True, False], [True, True, True, True]],
                             [[False, True, True, False], [False, False, False, False]]])
    states = distill.label_states(batch, final)
    assert len(states) == 3  # (step 0, row 0), (step 0, row 1), (step 1, row 0)
    assert states.target.tolist() == [[True, False, False, False], [False, True, True, False],
                                      [False, True, False, False]]
    assert states.eligible.tolist() == [[True, True, True, False], [True, True, True, True],
                                        [False, True, True, False]]
    assert states.t.tolist() == [0.0, 0.0, 0.25]
    assert not (states.target & ~states.eligible).any()
    with pytest.raises(ValueError, match="keep_proposals"):
        distill.label_states(grpo.RolloutBatch(**{**batch.__dict__, "proposals": None}), final)


def test_labels_are_the_oracle_s_own_commits_on_the_tiny_model(tiny_dllm):
    """Round 0 rolls the oracle out: where any position matches, the oracle commits exactly the
    labelled ones; where none does, it commits one (its fallback) and the label is all zero."""
    import unmasker
    from training.oracle import Oracle

    prompts = ["sort : 15 3 9 1", "sort : 4 8 2"]
    config = unmasker.SamplerConfig(gen_length=16, block_length=8)
    tap, oracle = Oracle().prepare(tiny_dllm, prompts, config, seed=0)
    states, batch = distill.collect(tap, oracle, prompts, config, oracle.reference.tokens, seed=0)
    S, N, L = batch.actions.shape
    live = batch.eligible.reshape(S * N, L).any(-1)
    commits = batch.actions.reshape(S * N, L)[live]
    assert len(states) == int(live.sum()) and len(states) >= 4
    matched = states.target.any(-1)
    assert torch.equal(commits[matched], states.target[matched])
    assert (commits[~matched].sum(-1) == 1).all()
    # against a hand recomputation: proposal == the reference's final token, on eligible positions
    ref = oracle.reference.tokens
    want = batch.eligible & (batch.proposals == ref[None])
    assert torch.equal(states.target, want.reshape(S * N, L)[live])
    assert matched.any()


def _fixed_states(n=48, L=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    conf = torch.rand(n, L, generator=g)
    elig = torch.rand(n, L, generator=g) < 0.7
    # a learnable rule: the oracle commits confident positions
    return distill.States(confidence=conf, masked=elig.clone(), t=torch.rand(n, generator=g), eligible=elig,
                          target=elig & (conf > 0.6))


def test_bce_decreases_on_a_fixed_small_dataset():
    from unmasker.policies.learned import ConfidencePolicyNet

    torch.manual_seed(0)
    net = ConfidencePolicyNet()
    states = _fixed_states()
    start = distill.imitation_stats(net, states)
    assert 0 < start["oracle_commit_rate"] < 1 and start["positions"] == int(states.eligible.sum())
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    losses = distill.fit(net, opt, states, steps=30, batch_size=16, generator=torch.Generator().manual_seed(1))
    end = distill.imitation_stats(net, states)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert end["bce"] < 0.8 * start["bce"]
    assert end["agreement"] > start["agreement"]
    # the loss only counts eligible positions: flipping targets elsewhere changes nothing
    flipped = distill.States(**{**states.__dict__, "target": states.target | ~states.eligible})
    assert distill.bce_loss(net, flipped).item() == pytest.approx(distill.bce_loss(net, states).item())


def test_distill_config_validation_names_the_field():
    with pytest.raises(ValueError, match="distill_rounds"):
        PolicyTrainConfig(distill_rounds=-1)
    with pytest.raises(ValueError, match="distill_only"):
        PolicyTrainConfig(distill_only=True)
    with pytest.raises(ValueError, match="distill_steps"):
        PolicyTrainConfig(distill_rounds=1, distill_steps=0)
    with pytest.raises(ValueError, match="distill_lr"):
        PolicyTrainConfig(distill_rounds=1, distill_lr=0.0)


def _cfg(model, out, **kw):
    base = dict(model=model, output_dir=out, task="sorting", gen_length=16, block_length=8, distill_rounds=2,
                distill_only=True, distill_prompts=2, distill_steps=3, distill_batch=8, eval_problems=2,
                prompts_per_step=2, group_size=4, max_steps=1, eval_every=1,
                reward="additive", train_temperature=10.0)  # GRPO: near-uniform actions, so NFE varies
    return PolicyTrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def distilled(tiny_model_dir, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("distilled") / "policy")
    result = train(_cfg(tiny_model_dir, out))
    return out, result


def _records(out):
    return [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]


def test_distillation_logs_its_progress_per_round(distilled):
    out, result = distilled
    assert result["distill_round"] == 2 and result["step"] == 0
    recs = _records(out)
    assert [r["round"] for r in recs] == [1, 2] and all(r["stage"] == "distill" for r in recs)
    assert [r["rollout_policy"] for r in recs] == ["oracle", "policy"]
    for r in recs:
        assert 0 <= r["agreement"] <= 1 and r["bce"] > 0 and 1 <= r["greedy_val"]["nfe"] <= 16
        assert r["states"] >= r["states_new"] > 0
    assert recs[1]["states"] == recs[0]["states"] + recs[1]["states_new"]  # aggregated (DAgger)
    assert "val_distilled" in recs[1] and "val" not in recs[1]  # the report reads "val" as GRPO's
    card = json.load(open(os.path.join(out, "card.json")))
    assert card["config"]["distill_rounds"] == 2 and card["total_steps"] == 0


def test_resume_after_an_interruption_gives_the_same_state(tiny_model_dir, distilled, tmp_path, monkeypatch):
    out_a, _ = distilled
    out_b = str(tmp_path / "policy")
    real, calls = distill.collect, []

    def dies_in_round_two(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed in round 2")
        return real(*args, **kwargs)

    monkeypatch.setattr(distill, "collect", dies_in_round_two)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tiny_model_dir, out_b))
    assert load_state(os.path.join(out_b, STATE_FILE))["state"]["distill_round"] == 1
    monkeypatch.setattr(distill, "collect", real)
    assert train(_cfg(tiny_model_dir, out_b))["distill_round"] == 2
    a, b = load_state(os.path.join(out_a, STATE_FILE)), load_state(os.path.join(out_b, STATE_FILE))
    assert a["net"].keys() == b["net"].keys() and all(torch.equal(a["net"][k], b["net"][k]) for k in a["net"])
    assert a["state"]["distill_states"] == b["state"]["distill_states"]
    from safetensors.torch import load_file

    da, db = (load_file(os.path.join(o, DISTILL_STATES_FILE)) for o in (out_a, out_b))
    assert all(torch.equal(da[k], db[k]) for k in da)
    strip = lambda rs: [{k: v for k, v in r.items() if k != "wall_min"} for r in rs]  # noqa: E731
    assert strip(_records(out_a)) == strip(_records(out_b))


def test_a_distilled_policy_runs_in_the_loop_and_grpo_continues_from_it(tiny_model_dir, tiny_dllm, distilled,
                                                                        tmp_path):
    import shutil

    import unmasker
    from unmasker.policies.learned import load_policy_net

    out, _ = distilled
    net = load_policy_net(out)
    assert sum(p.numel() for p in net.parameters()) == 331265
    distilled_weights = {k: v.clone() for k, v in net.state_dict().items()}
    policy = unmasker.build_policy("learned", checkpoint=out, temperature=0.5)
    traj = unmasker.generate(tiny_dllm, policy, ["sort : 15 3 9 1", "sort : 4 8 2"],
                             unmasker.SamplerConfig(gen_length=16, block_length=8))
    assert traj.still_masked.tolist() == [0, 0] and (traj.nfe <= 16).all()
    # without --distill_only the same run continues into GRPO from the distilled network
    cont = str(tmp_path / "cont")
    shutil.copytree(out, cont)
    result = train(_cfg(tiny_model_dir, cont, distill_only=False))
    assert result["step"] == 1 and result["distill_round"] == 2
    recs = _records(cont)
    assert [r.get("stage") for r in recs] == ["distill", "distill", None] and recs[-1]["step"] == 1
    grpo_net = load_state(os.path.join(cont, STATE_FILE))["net"]
    assert any(not torch.equal(grpo_net[k], distilled_weights[k]) for k in grpo_net)  # GRPO moved it
