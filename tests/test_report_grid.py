"""The report grid's vocabulary: one description per method, a section's overrides of it, and a
render-only report that measures nothing."""

import json

import pytest

from training import evaluate, report
from training.evaluate import Method

METHODS = {
    "top_k": Method(id="top_k", policy="top_k_confidence", label="Top-k", sweep={"k": [1, 2, 4]}),
    "learned": Method(id="learned", policy="learned", label="Learned", checkpoints="*",
                      match={"task": "word_problems", "block_length": 8}, params={"temperature": 0.5}),
}


def test_a_method_id_is_the_method_itself():
    assert report.resolve_entry(METHODS, "top_k") is METHODS["top_k"]


def test_a_list_sweeps_and_a_single_value_fixes_a_parameter():
    swept = report.resolve_entry(METHODS, {"method": "top_k", "k": [8, 16]})
    assert (swept.id, swept.label, swept.sweep, swept.params) == ("top_k", "Top-k", {"k": [8, 16]}, {})
    fixed = report.resolve_entry(METHODS, {"method": "top_k", "k": 2})
    assert (fixed.label, fixed.sweep, fixed.params) == ("Top-k, k=2", {}, {"k": 2})
    assert [v.params for v in fixed.variants()[0]] == [{"k": 2}]
    assert METHODS["top_k"].sweep == {"k": [1, 2, 4]}  # the description itself is unchanged


def test_overrides_of_a_learned_method():
    m = report.resolve_entry(METHODS, {"method": "learned", "id": "learned_t1", "temperature": 1.0,
                                       "beta": [1.0, 2.0], "match": {"alpha": 1, "block_length": 48},
                                       "per_checkpoint": True, "seeds": 1, "label": "Learned, tau 1"})
    assert (m.id, m.label, m.per_checkpoint, m.seeds) == ("learned_t1", "Learned, tau 1", True, 1)
    assert m.params == {"temperature": 1.0} and m.sweep == {"beta": [1.0, 2.0]}
    assert m.match == {"task": "word_problems", "block_length": 48, "alpha": 1}  # added to or replacing


@pytest.mark.parametrize("entry, message", [
    ("nope", "undefined method 'nope'"),
    ({"method": "nope"}, "undefined method 'nope'"),
    ({"k": 2}, "a method entry is an id or"),
    ({"method": "top_k", "threshold": 0.9}, "unknown parameters"),
    ({"method": "learned", "match": ["alpha"]}, "must be a table of card fields"),
])
def test_a_bad_entry_is_an_error_naming_the_section(entry, message):
    with pytest.raises(ValueError, match=message) as err:
        report.resolve_entry(METHODS, entry, "grid.toml: section s")
    assert "grid.toml: section s" in str(err.value)


def test_two_entries_of_one_method_need_their_own_ids():
    grid = report.Grid(defaults={}, methods=METHODS, sections=(), path="g.toml")
    twice = report.Section(id="s", title="t", methods=("top_k", {"method": "top_k", "k": 8}))
    with pytest.raises(ValueError, match="lists 'top_k' twice"):
        report.section_methods(grid, twice)
    named = report.Section(id="s", title="t", methods=("top_k", {"method": "top_k", "id": "top_k8", "k": 8}))
    assert list(report.section_methods(grid, named)) == ["top_k", "top_k8"]


def test_load_grid_checks_what_a_section_compares(tmp_path):
    path = tmp_path / "g.toml"
    path.write_text('[methods.top_k]\npolicy = "top_k_confidence"\n\n[[sections]]\nid = "s"\ntitle = "t"\n'
                    'methods = [{ method = "top_k", id = "fast", k = [8] }]\ncompare = [["top_k", "heuristics"]]\n')
    with pytest.raises(ValueError, match=r"compares methods it does not list: \['top_k'\]"):
        report.load_grid(str(path))


def test_the_shipped_grids_describe_each_method_once():
    """One method per heuristic (sections override its sweep) and no learned method that repeats
    another's selection under a new name (the old `*_lo`, `*_head`, `*_t05` copies)."""
    for name in ("report.toml", "quick.toml"):
        grid = report.load_grid(f"{report.GRIDS}/{name}")
        heuristics = [m.policy for m in grid.methods.values() if m.policy != "learned"]
        assert len(heuristics) == len(set(heuristics)), f"{name}: a heuristic described twice: {heuristics}"
        learned = [json.dumps([m.checkpoints, m.match], sort_keys=True) for m in grid.methods.values()
                   if m.policy == "learned"]
        assert len(learned) == len(set(learned)), f"{name}: two learned methods select the same checkpoints"
        for sec in grid.sections:
            report.section_methods(grid, sec)


def test_render_only_measures_nothing(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(evaluate, "calibrate", lambda *a, **k: pytest.fail("render_only calibrated"))
    monkeypatch.setattr(report, "calibrate", lambda *a, **k: pytest.fail("render_only calibrated"))
    monkeypatch.setattr(evaluate, "evaluate_point", lambda *a, **k: pytest.fail("render_only measured a point"))
    out = tmp_path / "report"
    cfg = report.ReportConfig(quick=True, model=tiny_model_dir, policies_dir=str(tmp_path / "none"), out=str(out),
                              render_only=True, progress=False)
    report.run_report(cfg, log=lambda *_: None)
    appendix = (out / report.APPENDIX).read_text()
    assert "points not measured yet" in appendix and "--render_only" in appendix
    assert not (out / "results.json").exists()
    setup = next(line for line in (out / "RESULTS.md").read_text().splitlines() if line.startswith("Setup:"))
    # the quick grid's section 4 runs on a model of its own: the setup line says so
    assert setup.startswith(f"Setup: model `{tiny_model_dir}` (section 4: `checkpoints/tiny-dllm-b`), test split")


def test_a_heuristic_point_is_matched_within_half_a_pass_and_one_point():
    from training.report import read_matching, unmatched_heuristics

    def row(policy, acc, nfe, line="x"):
        return {"policy": policy, "method": policy, "accuracy": acc, "mean_nfe": nfe, "line": line, "params": ""}

    rows = [row("learned", 0.70, 7.0), row("learned", 0.75, 10.0), row("oracle", 0.76, 9.0),
            row("eb_sampler", 0.70, 6.5, "EB"),    # 7.0 <= 6.5 + 0.5 at 70.0%: matched
            row("eb_sampler", 0.72, 7.0, "EB"),    # nothing within 7.5 NFE reaches 71%: missed
            row("factor", 0.76, 9.5, "F"),         # 75% at 10.0 is 1 point less at +0.5 NFE: matched
            row("confidence_threshold", 0.40, 6.4, "T")]  # cheapest learned is 7.0 > 6.9: missed
    total, missed = unmatched_heuristics(rows)
    assert total == 4 and [(r["line"], r["mean_nfe"]) for r in missed] == [("EB", 7.0), ("T", 6.4)]
    (text,) = read_matching(rows, "s")
    assert text.startswith("s: 2 of 4 heuristic points are matched") and text.index("6.4 NFE") < text.index("7.0 NFE")
    assert read_matching([r for r in rows if r["policy"] != "learned"], "s") == []
