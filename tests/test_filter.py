"""Learn2PD's filter (unmasker/policies/filter.py): it reads only the current block, loads as a
policy checkpoint, decides by the deterministic threshold rule, refuses a block length it was not
trained for, and trains by the distillation stage of train_policy (`--family filter`)."""

import json
import os

import pytest
import torch

from unmasker.policies import LearnedPolicy, StepContext
from unmasker.policies.filter import OUTSIDE, FilterNet
from unmasker.policies.learned import load_policy_net


def _net_with_logits(block_logits):
    """A filter whose block logits are the given constants (every weight zero, output bias set)."""
    net = FilterNet(block_length=len(block_logits), hidden=1)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net.mlp[-1].bias.copy_(torch.tensor(block_logits))
    return net


def _ctx(masked, eligible, block_length, confidence=None):
    masked, eligible = torch.tensor(masked), torch.tensor(eligible)
    B, L = masked.shape
    conf = torch.zeros(B, L) if confidence is None else torch.tensor(confidence)
    return StepContext(confidence=conf, token_prob=conf, margin=None, entropy=None, masked=masked, eligible=eligible,
                       t=torch.zeros(B), block_step=torch.zeros(B, dtype=torch.long), block_masked=eligible.sum(-1),
                       block_length=block_length, gen_length=L)


def test_about_two_thousand_parameters_at_a_block_of_eight():
    assert sum(p.numel() for p in FilterNet().parameters()) == 16 * 96 + 96 + 96 * 8 + 8  # 2,408


def test_the_filter_reads_only_the_block_of_the_first_masked_position():
    torch.manual_seed(0)
    net = FilterNet(block_length=4, hidden=8).eval()
    conf = torch.rand(2, 12)
    # row 0: positions 0-4 committed, first masked 5 -> block 4..7; row 1: first masked 1 -> block 0..3
    masked = torch.tensor([[False] * 5 + [True] * 7, [False] + [True] * 11])
    out = net(conf, masked, torch.zeros(2))
    window = [range(4, 8), range(0, 4)]
    for row, inside in enumerate(window):
        outside = [j for j in range(12) if j not in inside]
        assert torch.all(out[row, outside] == OUTSIDE)
    assert torch.equal(net.window(masked), torch.tensor([[4, 5, 6, 7], [0, 1, 2, 3]]))
    # confidences outside a row's block change nothing; inside they do
    moved = conf.clone()
    moved[0, :4], moved[0, 8:] = 0.5, 0.5
    assert torch.equal(net(moved, masked, None), out)
    moved[0, 6] = 1 - conf[0, 6]
    assert not torch.equal(net(moved, masked, None)[0, 4:8], out[0, 4:8])
    with pytest.raises(ValueError, match="do not tile"):
        net(torch.rand(1, 10), torch.ones(1, 10, dtype=torch.bool))


def test_threshold_rule_commits_what_reaches_it_and_falls_back_to_the_top_logit():
    net = _net_with_logits([2.0, -2.0, 0.5, 0.0])  # sigmoid: 0.881, 0.119, 0.622, 0.5
    masked = [[False] * 4 + [True] * 4]
    ctx = _ctx(masked, masked, block_length=4)
    assert LearnedPolicy(net=net, decision_threshold=0.6).select(ctx).tolist() == [[False] * 4 + [True, False, True, False]]
    assert LearnedPolicy(net=net, decision_threshold=0.5).select(ctx).tolist() == [[False] * 4 + [True, False, True, True]]
    # nothing reaches 0.9: the fallback commits the eligible position with the largest logit
    assert LearnedPolicy(net=net, decision_threshold=0.9).select(ctx).tolist() == [[False] * 4 + [True, False, False, False]]
    # a position that is not eligible is never committed
    elig = [[False] * 4 + [False, True, True, True]]
    assert LearnedPolicy(net=net, decision_threshold=0.6).select(_ctx(masked, elig, 4)).tolist() == [[False] * 6 + [True, False]]
    for bad in (-0.1, 1.0, True):
        with pytest.raises(ValueError, match="decision_threshold"):
            LearnedPolicy(net=net, decision_threshold=bad)


def test_a_filter_refuses_a_block_length_it_was_not_trained_for():
    masked = [[True] * 8]
    with pytest.raises(ValueError, match="blocks of 4; the sampler runs blocks of 8"):
        LearnedPolicy(net=_net_with_logits([0.0] * 4), decision_threshold=0.5).select(_ctx(masked, masked, block_length=8))


def test_a_saved_filter_loads_as_a_policy_checkpoint(tmp_path):
    torch.manual_seed(1)
    net = FilterNet(block_length=8, hidden=16).eval()
    net.save_pretrained(str(tmp_path))
    assert json.load(open(tmp_path / "config.json"))["family"] == "learn2pd_filter"
    loaded = load_policy_net(str(tmp_path))
    conf, masked = torch.rand(3, 16), torch.rand(3, 16) < 0.6
    assert isinstance(loaded, FilterNet) and torch.equal(loaded(conf, masked, None), net(conf, masked, None))
    cfg = json.load(open(tmp_path / "config.json"))
    json.dump({**cfg, "family": "something_else"}, open(tmp_path / "config.json", "w"))
    with pytest.raises(ValueError, match="unknown policy family 'something_else'"):
        load_policy_net(str(tmp_path))


def test_train_policy_distils_a_filter_that_runs_in_the_loop(tiny_model_dir, tiny_dllm, tmp_path):
    import unmasker
    from training.train_policy import PolicyTrainConfig, train

    out = str(tmp_path / "filter")
    cfg = PolicyTrainConfig(model=tiny_model_dir, output_dir=out, task="sorting", gen_length=16, block_length=8,
                            family="filter", filter_hidden=16, distill_rounds=2, distill_only=True,
                            distill_prompts=2, distill_steps=5, distill_batch=8, eval_problems=2)
    assert train(cfg)["distill_round"] == 2
    card = json.load(open(os.path.join(out, "card.json")))
    assert card["family"] == "learn2pd_filter" and card["parameters"] == 16 * 16 + 16 + 16 * 8 + 8
    assert "--family filter" in card["train_command"]
    assert card["decision_threshold"] == 0.5 and card["temperature"] == 1.0  # validated by the deterministic rule
    recs = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    assert [r["rollout_policy"] for r in recs] == ["oracle", "policy"] and recs[1]["states"] > recs[0]["states"]
    policy = unmasker.build_policy("learned", checkpoint=out, decision_threshold=0.5, temperature=1.0)
    traj = unmasker.generate(tiny_dllm, policy, ["sort : 15 3 9 1", "sort : 4 8 2"],
                             unmasker.SamplerConfig(gen_length=16, block_length=8))
    assert traj.still_masked.tolist() == [0, 0] and (traj.nfe <= 16).all()
    # deterministic: the same decode twice
    again = unmasker.generate(tiny_dllm, policy, ["sort : 15 3 9 1", "sort : 4 8 2"],
                              unmasker.SamplerConfig(gen_length=16, block_length=8), seed=5)
    assert torch.equal(traj.tokens, again.tokens)
    with pytest.raises(ValueError, match="family"):
        PolicyTrainConfig(family="mlp")


def test_the_network_says_which_rule_train_policy_validates_it_with():
    from unmasker.policies.learned import ConfidencePolicyNet

    assert FilterNet.decision_threshold == 0.5  # the filter: the deterministic rule (the card's value)
    assert not hasattr(ConfidencePolicyNet(), "decision_threshold")  # the paper's network: Bernoulli draws
