"""Model-free tests of the heuristic policies and the registry, on hand-made StepContexts with
numbers checked by hand (rules from paper section 4 and anchors section 1)."""

import dataclasses

import pytest
import torch

from unmasker.policies import POLICIES, build_policy, describe_policies, parse_params, policy_params
from unmasker.policies.base import StepContext, schedule_count
from unmasker.policies.heuristics import (
    ConfidenceThreshold, EBSampler, Entropy, Factor, Margin, RandomOrder, TopKConfidence,
)

HEURISTICS = [name for name in POLICIES if name != "learned"]


def make_ctx(token_prob=None, *, confidence=None, margin=None, entropy=None, eligible=None, masked=None,
             block_step=0, block_masked=None, seed=0, eos=None) -> StepContext:
    """A StepContext from nested lists (B rows of L values). Unspecified scores default to zeros,
    eligibility to everything, the block to "just started with every eligible position masked";
    `eos`: which proposals are EOS (proposal_is_eos; None leaves it out)."""
    rows = next(x for x in (token_prob, confidence, margin, entropy, eligible) if x is not None)
    shape = torch.tensor(rows, dtype=torch.float32).shape
    f = lambda x: torch.zeros(shape) if x is None else torch.tensor(x, dtype=torch.float32)
    token_prob = f(token_prob)
    eligible = torch.ones(shape, dtype=torch.bool) if eligible is None else torch.tensor(eligible, dtype=torch.bool)
    masked = eligible.clone() if masked is None else torch.tensor(masked, dtype=torch.bool)
    B, L = shape
    bs = torch.full((B,), block_step, dtype=torch.long) if isinstance(block_step, int) else torch.tensor(block_step)
    bm = eligible.sum(-1) if block_masked is None else torch.tensor(block_masked, dtype=torch.long)
    return StepContext(
        confidence=token_prob if confidence is None else f(confidence), token_prob=token_prob, margin=f(margin),
        entropy=f(entropy), masked=masked, eligible=eligible, t=torch.zeros(B), block_step=bs, block_masked=bm,
        block_length=L, gen_length=L, generator=torch.Generator().manual_seed(seed),
        proposal_is_eos=None if eos is None else torch.tensor(eos, dtype=torch.bool),
    )


def positions(commit: torch.Tensor, row: int = 0) -> set[int]:
    return set(commit[row].nonzero().flatten().tolist())


def run_block(policy, ctx: StepContext) -> list[list[int]]:
    """Apply `policy` step after step on a fixed context until the block is empty; returns the
    positions committed at each step (sorted)."""
    eligible, out = ctx.eligible.clone(), []
    for step in range(ctx.eligible.shape[-1] + 1):
        if not eligible.any():
            return out
        c = dataclasses.replace(ctx, eligible=eligible.clone(), masked=eligible.clone(),
                                block_step=torch.full_like(ctx.block_step, step))
        commit = policy.select(c)
        assert not (commit & ~eligible).any()
        out.append(sorted(commit[0].nonzero().flatten().tolist()))
        eligible &= ~commit
    raise AssertionError("block never finished")


# -- the LLaDA per-block schedule ------------------------------------------------------------------
@pytest.mark.parametrize("m, k, expected", [
    (8, 3, [3, 3, 2]),        # S = ceil(8/3) = 3: floor(8/3) = 2, remainder 2 front-loaded
    (7, 2, [2, 2, 2, 1]),     # S = 4: 1 + [i < 3]
    (10, 4, [4, 3, 3]),       # S = 3: 3 + [i < 1]
    (5, 5, [5]),
    (4, 8, [4]),              # k larger than the block: one step
    (8, 1, [1] * 8),
])
def test_schedule_counts(m, k, expected):
    counts = [int(schedule_count(torch.tensor([m]), torch.tensor([i]), k)) for i in range(len(expected))]
    assert counts == expected
    assert sum(counts) == m


def test_top_k_confidence_commits_schedule_in_confidence_order():
    probs = [[0.1, 0.9, 0.3, 0.8, 0.5, 0.7, 0.2, 0.6]]
    steps = run_block(TopKConfidence(k=3), make_ctx(probs))
    # M = 8, k = 3 -> 3, 3, 2 tokens, most confident first
    assert steps == [[1, 3, 5], [2, 4, 7], [0, 6]]


def test_top_k_confidence_scores_the_proposed_token_not_the_top1():
    # Under temperature the proposed token may not be the argmax; LLaDA's `low_confidence`
    # scores p(proposed token) (anchors 1.1), which is ctx.token_prob.
    ctx = make_ctx([[0.2, 0.6, 0.4]], confidence=[[0.9, 0.6, 0.5]])
    assert positions(TopKConfidence(k=1).select(ctx)) == {1}


def test_top_k_schedule_is_per_sample():
    # row 0: 4 masks at block start, k=2 -> 2 per step; row 1: 3 masks -> 2 then 1, and on its
    # second step (block_step 1) only one position is left to take
    ctx = make_ctx([[0.9, 0.8, 0.7, 0.6], [0.1, 0.2, 0.3, 0.4]], eligible=[[1, 1, 1, 1], [0, 1, 1, 1]],
                   block_step=[0, 1], block_masked=[4, 3])
    commit = TopKConfidence(k=2).select(ctx)
    assert positions(commit, 0) == {0, 1}
    assert positions(commit, 1) == {3}


@pytest.mark.parametrize("k", [0, -1, 1.5, True])
def test_k_is_validated(k):
    with pytest.raises(ValueError, match="k="):
        TopKConfidence(k=k)


# -- random ----------------------------------------------------------------------------------------
def test_random_respects_counts_and_eligibility():
    eligible = [[1, 0, 1, 1, 1, 0, 1, 1, 1, 1]]  # 8 eligible -> k=3 gives 3, 3, 2
    steps = run_block(RandomOrder(k=3), make_ctx(eligible=eligible))
    assert [len(s) for s in steps] == [3, 3, 2]
    chosen = [p for s in steps for p in s]
    assert sorted(chosen) == [0, 2, 3, 4, 6, 7, 8, 9]  # every eligible position exactly once


def test_random_is_seeded():
    pick = lambda seed: frozenset(positions(RandomOrder(k=2).select(make_ctx(eligible=[[1] * 12], seed=seed))))
    assert pick(3) == pick(3)
    assert len({pick(s) for s in range(10)}) > 1  # different seeds, different picks


# -- confidence threshold (Fast-dLLM) ----------------------------------------------------------------
def test_confidence_threshold_commits_all_above_and_at_least_argmax():
    probs = [[0.95, 0.4, 0.55, 0.5, 0.2],   # pos 0 is not eligible although most confident
             [0.1, 0.3, 0.2, 0.25, 0.05]]   # nothing reaches 0.5: only the argmax (pos 1)
    eligible = [[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]]
    commit = ConfidenceThreshold(threshold=0.5).select(make_ctx(probs, eligible=eligible))
    assert positions(commit, 0) == {2, 3}   # >= lambda, inclusive
    assert positions(commit, 1) == {1}


@pytest.mark.parametrize("bad", [1.7, 0, 0.0, -0.1, float("nan"), "0.9"])
def test_confidence_threshold_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="threshold"):
        ConfidenceThreshold(threshold=bad)


def test_confidence_threshold_accepts_one():
    commit = ConfidenceThreshold(threshold=1.0).select(make_ctx([[0.3, 0.6, 1.0, 0.2]]))
    assert positions(commit) == {2}


# -- factor (Fast-dLLM) ----------------------------------------------------------------------------
def test_factor_hand_example():
    # sorted c = 0.99 (pos 1), 0.9 (pos 3), 0.8 (pos 2), 0.78 (pos 0)
    # (n+1)(1-c_(n)): n=1 0.02, n=2 0.3, n=3 0.8, n=4 1.1   (n(1-c_(n)) would accept n=4 at f=1)
    probs = [[0.78, 0.99, 0.8, 0.9]]
    assert positions(Factor(factor=1.0).select(make_ctx(probs))) == {1, 3, 2}
    assert positions(Factor(factor=0.5).select(make_ctx(probs))) == {1, 3}
    assert positions(Factor(factor=1.2).select(make_ctx(probs))) == {0, 1, 2, 3}
    # two candidates: 3 * (1 - 0.6) = 1.2 > 1, so only the top one
    assert positions(Factor(factor=1.0).select(make_ctx([[0.6, 0.95]]))) == {1}


def test_factor_always_commits_the_top_rank():
    # 2 * (1 - 0.3) = 1.4 > 1: no rank qualifies, the most confident is still committed
    assert positions(Factor(factor=1.0).select(make_ctx([[0.2, 0.3, 0.1]]))) == {1}


@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), float("nan")])
def test_factor_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="factor"):
        Factor(factor=bad)


# -- margin and entropy ------------------------------------------------------------------------------
def test_margin_is_top_k_by_margin():
    ctx = make_ctx([[0.9, 0.1, 0.8, 0.7, 0.2]], margin=[[0.1, 0.5, 0.3, 0.05, 0.4]])
    assert positions(Margin(k=2).select(ctx)) == {1, 4}   # ignores token_prob


def test_entropy_is_top_k_by_lowest_entropy():
    ctx = make_ctx([[0.9, 0.1, 0.8, 0.7, 0.2]], entropy=[[2.0, 0.1, 1.0, 0.05, 3.0]])
    assert positions(Entropy(k=2).select(ctx)) == {3, 1}
    assert run_block(Entropy(k=2), ctx) == [[1, 3], [0, 2], [4]]  # M=5, k=2 -> 2, 2, 1


# -- EB-sampler ---------------------------------------------------------------------------------------
def test_eb_sampler_hand_example():
    # ascending: 0.02 (pos 1), 0.04 (pos 4), 0.05 (pos 3), 0.3 (pos 2), 0.5 (pos 0)
    # sum - max of prefixes: 0, 0.02, 0.06, 0.11, 0.41
    ent = [[0.5, 0.02, 0.3, 0.05, 0.04]]
    pick = lambda gamma, **kw: positions(EBSampler(gamma=gamma).select(make_ctx(entropy=ent, **kw)))
    assert pick(0.1) == {1, 4, 3}
    assert pick(0.2) == {1, 4, 3, 2}
    assert pick(0.0) == {1}          # the lowest-entropy position always
    assert pick(1.0) == {0, 1, 2, 3, 4}
    # an ineligible low-entropy position neither gets committed nor counts toward the bound:
    # ascending eligible 0.04, 0.05, 0.3: sums-minus-max 0, 0.04, 0.09
    assert pick(0.1, eligible=[[1, 0, 1, 1, 1]]) == {4, 3, 2}


@pytest.mark.parametrize("bad", [-0.1, float("inf")])
def test_eb_sampler_rejects_bad_gamma(bad):
    with pytest.raises(ValueError, match="gamma"):
        EBSampler(gamma=bad)


# -- common invariants ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", HEURISTICS)
def test_every_heuristic_commits_eligible_and_skips_finished_rows(name):
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(3, 10, generator=g)
    eligible = torch.rand(3, 10, generator=g) < 0.6
    eligible[1] = False  # a sample whose block is done: no eligible position, no commit
    eligible[0, 0] = eligible[2, 0] = True
    ctx = make_ctx(probs.tolist(), entropy=(1 - probs).tolist(), margin=probs.tolist(), eligible=eligible.tolist(),
                   eos=(probs > 0.7).tolist())
    commit = build_policy(name).select(ctx)
    assert commit.dtype == torch.bool and commit.shape == (3, 10)
    assert not (commit & ~eligible).any()
    assert not commit[1].any()
    assert commit[0].any() and commit[2].any()


# -- registry -----------------------------------------------------------------------------------------
def test_registry_lists_every_policy():
    assert set(POLICIES) == {"random", "top_k_confidence", "confidence_threshold", "factor", "margin", "entropy",
                             "eb_sampler", "learned", "eos_rejection", "eos_rejection_ass"}
    text = describe_policies()
    for name in POLICIES:
        assert f"{name}:" in text
        for f in policy_params(name):
            assert f.name in text
    assert "net" not in [f.name for f in policy_params("learned")]


def test_build_policy_converts_strings():
    assert build_policy("top_k_confidence", k="3") == TopKConfidence(k=3)
    assert build_policy("confidence_threshold", threshold="0.7").threshold == pytest.approx(0.7)
    assert build_policy("eb_sampler", gamma=0.5).gamma == 0.5   # non-strings pass through
    learned = build_policy("learned", fallback="false", beta="2", checkpoint="none", temperature="0.5")
    assert (learned.fallback, learned.beta, learned.checkpoint, learned.temperature) == (False, 2.0, None, 0.5)


def test_build_policy_errors():
    with pytest.raises(ValueError, match="unknown policy 'nope'"):
        build_policy("nope")
    with pytest.raises(ValueError, match="no parameter 'gamma'"):
        build_policy("top_k_confidence", gamma="1")
    with pytest.raises(ValueError, match="k='abc'"):
        build_policy("top_k_confidence", k="abc")
    with pytest.raises(ValueError, match="fallback='maybe'"):
        build_policy("learned", fallback="maybe")
    with pytest.raises(ValueError, match="threshold"):
        build_policy("confidence_threshold", threshold="1.7")


def test_parse_params():
    assert parse_params(["k=2", " threshold = 0.9 "]) == {"k": "2", "threshold": "0.9"}
    assert parse_params(None) == {}
    for bad in (["k"], ["=2"]):
        with pytest.raises(ValueError, match="NAME=VALUE"):
            parse_params(bad)


# -- EOS Early Rejection and the Ascending Step-Size schedule (arXiv 2509.23924) ------------------------
def eos_ctx(token_prob, eos, **kw):
    """make_ctx plus which positions' proposals are EOS."""
    return make_ctx(token_prob, eos=eos, **kw)


def test_eoser_factor_rises_linearly_over_the_block_hand_computed():
    from unmasker.policies.eos_rejection import EOSEarlyRejection

    # M = 4 masks, k = 1: S = 4 steps, gamma_i = 0.4 + 0.6 i / 3 = 0.4, 0.6, 0.8, 1.0
    p = EOSEarlyRejection(k=1)
    tp, eos = [[0.9, 0.5, 0.3, 0.2]], [[True, False, False, False]]
    gammas = [float(p.gamma(eos_ctx(tp, eos, block_step=i))[0]) for i in range(4)]
    assert gammas == pytest.approx([0.4, 0.6, 0.8, 1.0])
    # step 0: EOS scores 0.9 * 0.4 = 0.36 < 0.5, so position 1 goes first (plain top-1 would take the EOS)
    assert positions(p.select(eos_ctx(tp, eos, block_step=0))) == {1}
    assert positions(TopKConfidence(k=1).select(make_ctx(tp))) == {0}
    # step 1: 0.9 * 0.6 = 0.54 > 0.5: the EOS wins
    assert positions(p.select(eos_ctx(tp, eos, block_step=1))) == {0}
    # k = 2 on M = 4: S = 2 steps, gamma = 0.4 then 1.0; step 0 scores 0.36, 0.5, 0.3, 0.2 -> top 2 = {1, 0}
    p2 = EOSEarlyRejection(k=2)
    assert positions(p2.select(eos_ctx(tp, eos, block_step=0))) == {0, 1}
    assert float(p2.gamma(eos_ctx(tp, eos, block_step=1))[0]) == pytest.approx(1.0)
    # one step in the block (M <= k): the factor is gamma_max
    assert float(EOSEarlyRejection(k=8).gamma(eos_ctx(tp, eos))[0]) == pytest.approx(1.0)


def test_eoser_commits_eligible_only_and_at_least_one():
    from unmasker.policies.eos_rejection import EOSEarlyRejection

    # every eligible proposal is EOS: the rule still commits (the most confident one)
    ctx = eos_ctx([[0.9, 0.8, 0.1], [0.2, 0.3, 0.4]], [[True, True, True], [False, False, False]],
                  eligible=[[True, True, False], [False, False, False]])
    got = EOSEarlyRejection(k=1, eos_min_gamma=0.0).select(ctx)
    assert got.tolist() == [[True, False, False], [False, False, False]]


@pytest.mark.parametrize("m, expected", [
    (128, [1, 2, 4, 8, 16, 32, 65]),  # their L = 128 example: 7 passes
    (8, [1, 2, 5]), (48, [1, 2, 4, 8, 33]), (4, [1, 3]), (1, [1]), (3, [3]),
])
def test_ascending_step_size_schedule_hand_computed(m, expected):
    from unmasker.policies.eos_rejection import EOSRejectionASS

    ctx = eos_ctx([[1.0 - i / 1000 for i in range(m)]], [[False] * m])
    steps = run_block(EOSRejectionASS(eos_min_gamma=1.0), ctx)
    assert [len(s) for s in steps] == expected
    # confidences fall with the position: each step takes the most confident still masked
    assert [p for s in steps for p in s] == list(range(m))


def test_ass_eos_factor_hand_computed():
    from unmasker.policies.eos_rejection import EOSRejectionASS

    # M = 8: S = 3; gamma_i = 0.01 + 0.99 (2^(i+1) - 1) / 8 = 0.13375, 0.38125, 0.87625
    p = EOSRejectionASS()
    tp, eos = [[0.9, 0.5, 0.3, 0.2, 0.1, 0.1, 0.1, 0.1]], [[True] + [False] * 7]
    got = [float(p.gamma(eos_ctx(tp, eos, block_step=i))[0]) for i in range(3)]
    assert got == pytest.approx([0.13375, 0.38125, 0.87625])
    assert positions(p.select(eos_ctx(tp, eos, block_step=0))) == {1}  # 0.9 * 0.134 = 0.12 < 0.5
    # step 1 commits two: scores 0.9 * 0.381 = 0.343, 0.5, 0.3, ... -> {1, 0}
    assert positions(p.select(eos_ctx(tp, eos, block_step=1))) == {0, 1}


@pytest.mark.parametrize("kwargs, message", [
    ({"eos_min_gamma": -0.1}, "eos_min_gamma"), ({"eos_max_gamma": 1.5}, "eos_max_gamma"),
    ({"eos_min_gamma": 0.8, "eos_max_gamma": 0.5}, "ascend"), ({"eos_min_gamma": "0.4"}, "eos_min_gamma"),
    ({"eos_max_gamma": float("nan")}, "eos_max_gamma"),
])
def test_eos_rules_reject_bad_gammas(kwargs, message):
    from unmasker.policies.eos_rejection import EOSEarlyRejection, EOSRejectionASS

    for cls in (EOSEarlyRejection, EOSRejectionASS):
        with pytest.raises(ValueError, match=message):
            cls(**kwargs)
    with pytest.raises(ValueError, match="k="):
        EOSEarlyRejection(k=0)


def test_eos_rules_say_what_they_miss_on_a_plain_context():
    """Without the EOS flag the rules fail with a message naming it, never fall back silently."""
    for name in ("eos_rejection", "eos_rejection_ass"):
        with pytest.raises(ValueError, match="proposal_is_eos"):
            build_policy(name).select(make_ctx([[0.5, 0.4]]))
        # registered (the app and the CLI list them), strings converted, and they declare the flag
        assert build_policy(name, eos_min_gamma="0.5").eos_min_gamma == 0.5
        assert name in POLICIES and "proposal_is_eos" in POLICIES[name].reads
