"""Evaluation harness and report: Pareto helpers on hand-made lists, grid expansion from cards,
the harness and the quick report on the tiny random model, resume."""

import dataclasses
import json
import os

import pytest

from training import evaluate, report
from training.evaluate import Method, matched_nfe_gap, pareto_frontier

@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The tiny models gain nothing from threads, and on a shared 2-core machine intra-op spinning
    makes each step ~40x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


POINT_FIELDS = {"policy", "params", "task", "model", "block_length", "gen_length", "seed", "n", "accuracy",
                "mean_nfe", "tokens_per_nfe", "wall_seconds", "policy_time_share", "forward_passes"}


def test_pareto_frontier_hand_made():
    points = [(10, 0.5), (20, 0.6), (15, 0.4), (20, 0.55), (30, 0.6), (5, 0.2), (40, 0.9), (5, 0.1), (10, 0.5)]
    assert pareto_frontier(points) == [(5, 0.2), (10, 0.5), (20, 0.6), (40, 0.9)]
    assert pareto_frontier([]) == []
    assert pareto_frontier([(3, 0.0)]) == [(3, 0.0)]
    # a cheaper point that is as accurate removes every costlier one
    assert pareto_frontier([(50, 0.8), (8, 0.8), (20, 0.7)]) == [(8, 0.8)]


def test_matched_nfe_gap_is_stepwise_from_below():
    a = [(5, 0.3), (10, 0.5), (20, 0.65), (40, 0.9)]
    b = [(8, 0.4), (10, 0.45), (25, 0.8)]
    got = matched_nfe_gap(a, b)
    # a@5: b has nothing that cheap -> left out; a@10: b's best at <= 10 is 0.45 (exact NFE counts);
    # a@20: still 0.45 (b's 0.8 costs 25, no credit); a@40: 0.8
    assert [g[0] for g in got] == [10, 20, 40]
    assert [g[2] for g in got] == [0.45, 0.45, 0.8]
    assert [g[3] for g in got] == pytest.approx([0.05, 0.2, 0.1])
    assert matched_nfe_gap(a, []) == []
    assert matched_nfe_gap([(3, 0.1)], b) == []


def test_ci95_hand_computed():
    from training.eval_views import ci95

    # 1.96 * sqrt(0.5 * 0.5 / 100) = 0.098; at n = 500 and p = 0.8: 1.96 * sqrt(0.16 / 500) = 0.03506
    assert ci95(0.5, 100) == pytest.approx(0.098)
    assert ci95(0.8, 500) == pytest.approx(0.035062, abs=1e-6)
    assert ci95(1.0, 500) == 0.0
    # seed spread widens it: std 0.03 over 3 seeds adds 0.03^2 / 3 = 0.0003 to the variance
    assert ci95(0.8, 500, 0.03, 3) == pytest.approx(1.96 * (0.16 / 500 + 0.0009 / 3) ** 0.5)
    with pytest.raises(ValueError):
        ci95(0.5, 0)


def _fake_policy(folder, init_bias=-2.0, **card):
    """An untrained policy checkpoint; init_bias sets its unmask probability sigmoid(bias / tau)."""
    from unmasker.policies.learned import ConfidencePolicyNet

    ConfidencePolicyNet(init_bias=init_bias).save_pretrained(folder)
    with open(os.path.join(folder, "card.json"), "w") as f:
        json.dump({"name": os.path.basename(folder), **card}, f)
    return folder


def test_learned_method_selects_checkpoints_by_card(tmp_path):
    _fake_policy(str(tmp_path / "wp-a1"), task="word_problems", block_length=8, alpha=1.0, reward="multiplicative")
    _fake_policy(str(tmp_path / "wp-a3"), task="word_problems", config={"block_length": 8, "alpha": 3})
    _fake_policy(str(tmp_path / "sudoku"), task="sudoku", block_length=4, alpha=1)
    (tmp_path / "training-now").mkdir()  # a folder still being written: card only
    (tmp_path / "training-now" / "card.json").write_text(json.dumps({"task": "word_problems", "block_length": 8}))
    # a run in progress: weights of its best round so far, a card with "steps" but no "total_steps"
    _fake_policy(str(tmp_path / "mid-run"), task="word_problems", block_length=8, steps=5)

    m = Method(id="lw", policy="learned", checkpoints="*", match={"task": "word_problems", "block_length": 8},
               sweep={"temperature": [0.5, 1.0]})
    variants, notes = m.variants(str(tmp_path))
    assert sorted({v.checkpoint for v in variants}) == ["wp-a1", "wp-a3"]  # nested "config" fields count
    assert len(variants) == 4 and all(v.policy_hash for v in variants)
    assert any("training-now" in n for n in notes) and any("mid-run" in n for n in notes)
    one = Method(id="a1", policy="learned", checkpoints="*", match={"alpha": 1, "task": ["word_problems"]},
                 per_checkpoint=True)
    (v,), _ = one.variants(str(tmp_path))  # alpha 1 matches the card's 1.0
    assert v.line == "a1 [wp-a1]" and v.params["checkpoint"].endswith("wp-a1")
    none, notes = Method(id="x", policy="learned", checkpoints="*", match={"reward": "additive"}).variants(str(tmp_path))
    assert none == [] and "skipped" in notes[-1]
    with pytest.raises(ValueError, match="thresh"):
        Method(id="bad", policy="confidence_threshold", sweep={"thresh": [0.9]})


def test_harness_two_policies_json_figure_and_resume(tiny_model_dir, tmp_path, monkeypatch):
    out = str(tmp_path / "res.json")
    argv = ["--model", tiny_model_dir, "--policies", "top_k_confidence:k=2,8", "learned:temperature=1.0",
            "--n", "6", "--batch_size", "4", "--seeds", "0", "1", "--out", out, "--progress", "false"]
    evaluate.main(argv)
    points = json.load(open(out))["points"]
    assert len(points) == 4  # top-k: 2 values x 1 seed (deterministic); learned: 2 seeds
    for p in points:
        assert POINT_FIELDS <= set(p)
        assert p["n"] == 6 and p["task"] == "word_problems" and (p["block_length"], p["gen_length"]) == (8, 48)
        assert 0 <= p["accuracy"] <= 1 and 0 <= p["policy_time_share"] < 1
        assert p["tokens_per_nfe"] == pytest.approx(p["gen_length"] / p["mean_nfe"])
    nfe = {p["params"].get("k"): p["mean_nfe"] for p in points if p["policy"] == "top_k_confidence"}
    assert nfe == {2: 24.0, 8: 6.0}  # k per step inside 6 blocks of 8
    assert sorted(p["seed"] for p in points if p["policy"] == "learned") == [0, 1]
    assert os.path.getsize(str(tmp_path / "res.html")) > 1000

    def must_not_run(*a, **k):
        raise AssertionError("a finished point was measured again")

    monkeypatch.setattr(evaluate, "evaluate_point", must_not_run)
    evaluate.main(argv)  # every point already in the JSON
    assert json.load(open(out))["points"] == points


def test_quick_report_with_tiny_model(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the grid's relative checkpoints/tiny-dllm-b must not find the shipped one
    pol = tmp_path / "policies"
    _fake_policy(str(pol / "wp-a1"), 0.0, task="word_problems", block_length=8, alpha=1, reward="multiplicative")
    _fake_policy(str(pol / "wp-a3"), 6.0, task="word_problems", block_length=8, alpha=3, reward="additive")
    with open(pol / "wp-a1" / "metrics.jsonl", "w") as f:  # validation every 20 rounds, best at round 60
        for step, reward in ((20, 0.30), (40, 0.35), (60, 0.50), (80, 0.45)):
            f.write(json.dumps({"step": step, "reward": 0.1, "wall_min": step / 10,
                                "val": {"accuracy": reward + 0.2, "nfe": 10.0, "reward": reward}}) + "\n")
            f.write(json.dumps({"step": step + 1, "reward": 0.2}) + "\n")  # a round without validation
    out = tmp_path / "report"
    cfg = report.ReportConfig(quick=True, model=tiny_model_dir, policies_dir=str(pol), out=str(out), progress=False)
    first = report.run_report(cfg, log=lambda *_: None)

    summary = (out / "RESULTS.md").read_text()
    text = summary + (out / report.APPENDIX).read_text()
    grid = report.load_grid(cfg.grid_path())
    for sec in grid.sections:
        assert f"## {sec.title}" in text and f"({report.APPENDIX}#{sec.id})" in summary
    # RESULTS.md draws the summary sections' frontiers: the oracle, then heuristics and learned points
    assert "## Headline frontiers" in summary and "| limit | Oracle (limit, not a policy) |" in summary
    assert "checkpoints/tiny-dllm-b" in text and "Skipped" in text  # missing model: a note, not a crash
    assert "Learned (Sudoku): skipped" in text  # no Sudoku policy among the fakes
    assert "Matched-NFE gap" in text and "collapsed" in text and "95% CI" in text
    for sid in ("semi_ar", "block_length", "reward", "wallclock"):
        assert (out / f"fig_{sid}.html").exists()
    points = json.load(open(out / "results.json"))["points"]
    assert {p["policy"] for p in points} >= {"learned", "top_k_confidence", "confidence_threshold", "random", "oracle",
                                             "eos_rejection", "eos_rejection_ass"}
    assert "the oracle (the limit; not a policy" in text and "reproducing the one-token-per-step tokens" in text
    oracle = next(r for r in first["sections"]["semi_ar"]["rows"] if r["policy"] == "oracle")
    assert oracle["reference_accuracy"] is not None and oracle["mean_nfe"] < 48
    assert {p["task"] for p in points} == {"word_problems", "word_problems_long", "sudoku", "sorting"}
    reward = {r["line"]: r for r in first["sections"]["reward"]["rows"]}
    assert set(reward) == {"Additive reward [wp-a3]", "Multiplicative reward [wp-a1]"}
    # sigmoid(6) ~ 0.998: the whole block goes in one step, NFE = number of blocks
    assert reward["Additive reward [wp-a3]"]["collapsed"] and reward["Additive reward [wp-a3]"]["mean_nfe"] < 6.6
    assert not reward["Multiplicative reward [wp-a1]"]["collapsed"]
    curves = first["sections"]["rl_budget"]
    assert [r["step"] for r in curves["rows"]] == [20, 40, 60, 80] and (out / "fig_rl_budget.html").exists()
    assert "best validation reward 0.500 at round 60 (70.0% at 10.0 NFE); last 0.450" in curves["reading"][0]
    assert "| wp-a1 | 60 (best) | 0.500 | 70.0 | 10.0 | 6.0 |" in text

    # a human interpretation survives regeneration, and nothing is measured twice
    human = "> The learned policy is slower here because it is untrained.\n"
    (out / "RESULTS.md").write_text(summary.replace(report.HUMAN_PLACEHOLDER, human, 1))
    monkeypatch.setattr(evaluate, "evaluate_point", lambda *a, **k: pytest.fail("resume measured a point"))
    report.run_report(cfg, log=lambda *_: None)
    again = (out / "RESULTS.md").read_text() + (out / report.APPENDIX).read_text()
    # the sections' blocks + the claims and what-was-tried blocks - the edited one
    assert again.count(human) == 1 and again.count(report.HUMAN_PLACEHOLDER) == len(grid.sections) + 1


def test_training_curve_of_a_continued_run_counts_on_from_its_parent(tmp_path):
    parent = _fake_policy(str(tmp_path / "p"), task="word_problems", block_length=8, total_steps=99)
    child = _fake_policy(str(tmp_path / "c"), task="word_problems", block_length=8, total_steps=10,
                         config={"init_checkpoint": parent})
    for folder, steps in ((parent, (50, 99)), (child, (5, 10))):
        with open(os.path.join(folder, "metrics.jsonl"), "w") as f:
            for step in steps:
                f.write(json.dumps({"step": step, "val": {"accuracy": 0.5, "nfe": 9.0, "reward": 0.4}}) + "\n")
    m = Method(id="lw", policy="learned", checkpoints="*", match={"task": "word_problems"}, per_checkpoint=True)
    grid = report.Grid(defaults={"policies_dir": str(tmp_path)}, methods={"lw": m}, sections=(), path="")
    sec = report.Section(id="curves", title="t", methods=("lw",), view="training")
    rows = report.training_rows(grid, sec)
    assert sorted((r["line"], r["step"]) for r in rows) == [("c", 104), ("c", 109), ("p", 50), ("p", 99)]
    reading = report.read_training(rows, sec, {})
    assert any(t.startswith("c: 2 validations over 109 rounds (continued from p") for t in reading)


def test_compare_results_hand_made():
    from training.compare_results import compare

    def pt(key, acc, nfe, seed=0):
        return {"key": key, "task": "t", "policy": "p", "params": {}, "block_length": 8, "seed": seed,
                "accuracy": acc, "mean_nfe": nfe}

    a = {"x": pt("x", 0.5, 6.0), "y": pt("y", 0.25, 12.0), "only-a": pt("only-a", 1.0, 1.0)}
    b = {"x": pt("x", 0.5, 6.0), "y": pt("y", 0.5, 11.5), "only-b": pt("only-b", 0.0, 1.0)}
    out = compare(a, b)
    assert (out["shared"], out["only_a"], out["only_b"]) == (2, 1, 1)
    assert out["accuracy"] == {"max_abs_diff": 0.25, "differing": 1}
    assert out["mean_nfe"] == {"max_abs_diff": 0.5, "differing": 1}
    assert out["worst"]["accuracy"] == [0.25, 0.5]


def test_point_key_carries_the_problem_list(monkeypatch):
    """A point measured on another version of a task generator (other problems) is not reused."""
    import dataclasses

    from training.tasks import puzzles

    setting = evaluate.Setting(task="sorting", model="nowhere/model", gen_length=16, block_length=16, n=5)
    variant = evaluate.Variant(method="topk", line="Top-k", policy="top_k_confidence", params={"k": 1})
    before = evaluate.make_requests([setting], [variant], [0])[0]
    assert before.problems_hash == evaluate.problems_digest("sorting", "test", 5)
    assert before.problems_hash != evaluate.problems_digest("sorting", "test", 6)

    real = puzzles.Sorting.sample
    monkeypatch.setattr(puzzles.Sorting, "sample",
                        lambda self, rng, split: dataclasses.replace(real(self, rng, split), answer="changed"))
    after = evaluate.make_requests([setting], [variant], [0])[0]
    assert after.problems_hash != before.problems_hash and after.key() != before.key()


# -- the oracle (a reference point, not a policy) ----------------------------------------------------
class _FakeTap:
    """Stands in for TappedDLLM: `last` holds logits (B_active, P + L, V) of the current pass, one-hot
    on the given proposals, with the mask id (0) above every real token: it must be excluded."""

    mask_id = 0

    def __init__(self, proposals, vocab=5, prompt=2):
        import torch

        p = torch.tensor(proposals)
        self.last = torch.zeros(p.shape[0], prompt + p.shape[1], vocab)
        self.last[:, prompt:].scatter_(-1, p[..., None], 1.0)
        self.last[..., 0] = 9.0


def _ctx(token_prob, eligible):
    from tests.test_policies import make_ctx

    return make_ctx(token_prob, eligible=eligible)


def test_oracle_commits_matching_proposals_else_the_most_confident():
    from training.oracle import OracleCommit

    import torch

    final = torch.tensor([[1, 2, 3, 4], [1, 2, 3, 4]])
    # row 0: proposals match the final tokens at 0 and 2 (position 3 matches but is not eligible);
    # row 1: nothing matches -> the most confident eligible position (2: 0.7)
    tap = _FakeTap([[1, 3, 3, 4], [2, 1, 4, 1]])
    ctx = _ctx([[0.1, 0.9, 0.2, 0.3], [0.5, 0.2, 0.7, 0.9]],
               [[True, True, True, False], [True, True, True, False]])
    got = OracleCommit(tap, final).select(ctx)
    assert got.tolist() == [[True, False, True, False], [False, False, True, False]]


def test_oracle_maps_active_rows_when_the_sampler_skips_finished_ones():
    from training.oracle import OracleCommit

    import torch

    final = torch.tensor([[1, 2], [3, 4], [1, 1]])
    tap = _FakeTap([[3, 4], [1, 3]])  # the logits of rows 1 and 2 only (row 0 has no work)
    ctx = _ctx([[0.0, 0.0], [0.5, 0.6], [0.9, 0.1]], [[False, False], [True, True], [True, True]])
    got = OracleCommit(tap, final).select(ctx)
    assert got.tolist() == [[False, False], [True, True], [True, False]]


def test_oracle_is_not_a_registry_policy_but_an_evaluation_method():
    from unmasker.policies import POLICIES

    assert "oracle" not in POLICIES  # the app and the CLI never offer it
    m = Method(id="o", policy="oracle")
    (v,), _ = m.variants()
    assert v.policy == "oracle" and not v.stochastic
    with pytest.raises(ValueError, match="unknown parameters"):
        Method(id="o", policy="oracle", params={"k": 1})


def test_oracle_point_on_the_tiny_model(tiny_dllm):
    """The oracle reproduces the one-token-per-step tokens with fewer passes (never more)."""
    import unmasker
    from training.oracle import Oracle
    from training.tasks import get_task

    task = get_task("word_problems")
    problems = task.problems("test", 6)
    config = unmasker.SamplerConfig(gen_length=16, block_length=8)
    point = evaluate.evaluate_point(tiny_dllm, task, problems, Oracle(), config, seed=0, batch_size=4)
    k1 = evaluate.evaluate_point(tiny_dllm, task, problems, unmasker.build_policy("top_k_confidence", k=1),
                                 config, seed=0, batch_size=4)
    assert k1["mean_nfe"] == 16
    assert point["reference_accuracy"] == k1["accuracy"]
    assert 2 <= point["mean_nfe"] < 16  # at least one pass per block, and parallel commits happen
    assert 0 <= point["oracle_agreement"] <= 1
    if point["oracle_agreement"] == 1:
        assert point["accuracy"] == k1["accuracy"]


def test_eos_rejection_runs_through_the_evaluator(tiny_dllm):
    import unmasker
    from training.tasks import get_task

    task = get_task("word_problems")
    config = unmasker.SamplerConfig(gen_length=16, block_length=16)
    for name, params, nfe in (("eos_rejection", {"k": 2}, 8), ("eos_rejection_ass", {}, 4)):
        m = Method(id=name, policy=name, params=params)
        (v,), _ = m.variants()
        policy = evaluate.build_method_policy(v.policy, v.params)
        point = evaluate.evaluate_point(tiny_dllm, task, task.problems("test", 4), policy, config, seed=0)
        assert point["mean_nfe"] == nfe  # k = 2 over 16 masks; ASS: 1, 2, 4, 9
        assert "oracle_agreement" not in point


def test_report_reads_the_oracle_as_the_limit_hand_made():
    def row(policy, acc, nfe, **extra):
        return {"policy": policy, "method": policy, "line": policy, "params": "", "accuracy": acc,
                "accuracy_ci95": 0.03, "mean_nfe": nfe, **extra}

    rows = [row("oracle", 0.77, 3.0, reference_accuracy=0.78, oracle_agreement=0.99),
            row("confidence_threshold", 0.77, 4.9), row("confidence_threshold", 0.70, 3.6),
            row("learned", 0.66, 3.1), row("learned", 0.73, 10.7)]
    assert [r["policy"] for r in report._group(rows, "heuristics")] == ["confidence_threshold"] * 2
    (text,) = report.read_oracle(rows, "S")
    assert "77.0% (95% CI ±3.0) at 3.0 NFE" in text and "99.0% of problems" in text and "78.0%" in text
    # 97% of 78% = 75.66%: the threshold point at 4.9 NFE keeps it (1.63x the oracle's NFE), no learned one does
    assert "Cheapest heuristic point keeping 97% of it: 77.0%" in text and "1.63x the oracle's NFE" in text
    assert "No learned point keeps 97% of it (>= 75.7%)" in text
