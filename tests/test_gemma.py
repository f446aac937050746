"""DiffusionGemma backend on a tiny random config (~175K parameters, CPU): the recording sampler
leaves the model's own `generate` unchanged, and the records show what the model really does
(nothing sticky, argmax output, adaptive stop, passes per row)."""

import dataclasses

import pytest
import torch

transformers = pytest.importorskip("transformers")
if not hasattr(transformers, "DiffusionGemmaForBlockDiffusion"):
    pytest.skip("this transformers has no DiffusionGemma", allow_module_level=True)

from unmasker import DLLMError, load_dllm  # noqa: E402
from unmasker.gemma import (EntropyBound, GemmaDLLM, GemmaSampling, RecordingSampler,  # noqa: E402
                            ThresholdAcceptance, TopKAcceptance, build_acceptance)

PROMPTS = ["sort : 15 3 9 27", "tom has 3 pens"]
C = 8


@pytest.fixture(scope="module")
def gemma(tmp_path_factory):
    from training.tiny import build_tiny_diffusion_gemma

    folder = build_tiny_diffusion_gemma(str(tmp_path_factory.mktemp("tiny-gemma")), canvas_length=C)
    g = load_dllm(folder, device="cpu")
    assert isinstance(g, GemmaDLLM) and g.canvas_length == C
    return g


def _canvas_steps(run, canvas):
    return [s for s in run.steps if s.canvas == canvas]


def test_recording_the_stock_sampler_is_bit_identical_to_plain_generate(gemma):
    s = GemmaSampling(max_new_tokens=2 * C, max_denoising_steps=6)
    ids, att = gemma.encode(PROMPTS)
    torch.manual_seed(7)
    stock = gemma.model.generate(ids, attention_mask=att, disable_compile=True, eos_token_id=list(gemma.eos_ids),
                                 pad_token_id=gemma.pad_id, **s.generate_kwargs())
    run = gemma.generate((ids, att), EntropyBound(), s, seed=7)
    assert run.tokens.tolist() == stock.sequences[:, ids.shape[1]:].tolist()
    assert torch.equal(run.tokens_per_forward, stock.tokens_per_forward)
    # passes per row, counted as generate counts them: tokens_per_forward = new tokens / passes
    assert run.passes.tolist() == [12, 12] and len(run.steps) == 12
    assert [s.remaining for s in run.steps[:6]] == [6, 5, 4, 3, 2, 1]  # cur_step counts the steps left
    # random weights: every entropy is about ln V, so the entropy bound 0.1 accepts one position per step
    assert all(s.accepted.sum(-1).tolist() == [1, 1] for s in run.steps)


def test_nothing_is_sticky_and_the_output_is_the_last_argmax(gemma):
    run = gemma.generate(PROMPTS, EntropyBound(), GemmaSampling(max_new_tokens=2 * C, max_denoising_steps=8), seed=1)
    renoised_after_accept = 0
    for canvas in (0, 1):
        steps = _canvas_steps(run, canvas)
        for a, b in zip(steps, steps[1:]):
            assert torch.equal(a.next_input, b.input)  # the renoised canvas is the next input
            renoised_after_accept += int((a.accepted & b.renoised).sum())
            fresh = a.renoised
            # renoised positions carry fresh random tokens, not the sample
            assert (a.next_input[fresh] != a.sampled[fresh]).any()
        last = steps[-1]
        out = run.tokens[:, canvas * C:(canvas + 1) * C]
        assert torch.equal(out, last.argmax)  # no EOS in these rows: nothing padded
        assert (out != torch.where(last.accepted, last.sampled, last.input)).any()  # not the accepted canvas
    assert renoised_after_accept > 0


@pytest.mark.parametrize("rule", [TopKAcceptance(k=2, sticky=True), ThresholdAcceptance(threshold=0.5, sticky=True)])
def test_sticky_rules_never_renoise_what_they_accepted(gemma, rule):
    run = gemma.generate(PROMPTS, rule, GemmaSampling(max_new_tokens=C, max_denoising_steps=6), seed=2)
    steps = _canvas_steps(run, 0)
    for a, b in zip(steps, steps[1:]):
        assert (a.accepted <= b.accepted).all()
        kept = a.accepted
        assert torch.equal(b.input[kept], a.next_input[kept])
        assert torch.equal(b.next_input[kept], a.next_input[kept])  # an accepted token never changes again
    counts = [s.accepted[0].sum().item() for s in steps]
    if isinstance(rule, TopKAcceptance):
        assert counts == [min(C, 2 * (i + 1)) for i in range(len(steps))]
    else:
        assert counts == sorted(counts) and counts[0] >= 1


def test_non_sticky_top_k_accepts_s_times_k_anew_each_step(gemma):
    run = gemma.generate(PROMPTS[:1], TopKAcceptance(k=3), GemmaSampling(max_new_tokens=C, max_denoising_steps=4),
                         seed=3)
    for s in run.steps:
        n = min(C, 3 * (s.step + 1))
        assert s.accepted[0].sum().item() == n
        top = s.confidence[0].argsort(descending=True, stable=True)[:n]
        assert s.accepted[0, top].all()


def test_adaptive_stop_ends_a_canvas(gemma):
    s = GemmaSampling(max_new_tokens=2 * C, max_denoising_steps=10, stability_threshold=0, confidence_threshold=10.0)
    run = gemma.generate(PROMPTS, EntropyBound(), s, seed=0)
    assert [(st.canvas, st.step) for st in run.steps] == [(0, 0), (1, 0)]
    assert all(st.stopped.all() for st in run.steps)
    assert run.passes.tolist() == [2, 2] and run.tokens_per_forward.tolist() == [C, C]
    never = GemmaSampling(max_new_tokens=C, max_denoising_steps=5, adaptive_stop=False)
    assert len(gemma.generate(PROMPTS, EntropyBound(), never, seed=0).steps) == 5


def test_a_row_that_ended_costs_no_more_passes(gemma):
    """Declare a token of row 0's first canvas the EOS: row 0 finishes after canvas 0, row 1 runs
    on, and the passes counted per row agree with generate's tokens_per_forward."""
    s = GemmaSampling(max_new_tokens=2 * C, max_denoising_steps=4)
    first = gemma.generate(PROMPTS, EntropyBound(), s, seed=4)
    row0, row1 = first.tokens[0, :C].tolist(), first.tokens[1, :C].tolist()
    eos = next(t for t in row0 if t not in row1 and t != gemma.pad_id)
    g = dataclasses.replace(gemma, eos_ids=(eos,))
    run = g.generate(PROMPTS, EntropyBound(), s, seed=4)
    assert run.passes.tolist() == [4, 8]
    assert not run.steps[-1].active[0] and run.steps[-1].active[1]
    valid = (run.tokens != gemma.pad_id).sum(-1).float()
    assert torch.allclose(valid / run.passes, run.tokens_per_forward)
    assert g.decode(run.tokens)[0] == g.decode(first.tokens[:, :row0.index(eos)])[0]


def test_hooks_are_removed_even_when_a_rule_fails(gemma):
    class AcceptAll:
        sticky = False

        def accept(self, ctx):
            return ctx.confidence > 0

    class WrongShape(AcceptAll):
        def accept(self, ctx):
            return torch.ones(1, dtype=torch.bool)

    with pytest.raises(TypeError, match="bool tensor of shape"):
        gemma.generate(PROMPTS, WrongShape(), GemmaSampling(max_new_tokens=C, max_denoising_steps=2))
    for hook in ("_prepare_sampler", "_prepare_diffusion_stopping_criteria", "_finalize_canvas"):
        assert hook not in gemma.model.__dict__
    assert not hasattr(gemma.model, "_compiled_accept_canvas")  # disable_compile: no sampler is cached
    run = gemma.generate(PROMPTS, AcceptAll(), GemmaSampling(max_new_tokens=C, max_denoising_steps=2))
    assert all(s.accepted.all() for s in run.steps)
    with pytest.raises(TypeError, match="acceptance rule"):
        gemma.generate(PROMPTS, object(), GemmaSampling(max_new_tokens=C, max_denoising_steps=2))


def test_same_seed_same_run_and_rules_do_not_leak_into_each_other(gemma):
    s = GemmaSampling(max_new_tokens=C, max_denoising_steps=5)
    a = gemma.generate(PROMPTS, TopKAcceptance(k=1), s, seed=9)
    gemma.generate(PROMPTS, ThresholdAcceptance(threshold=0.01), s, seed=9)
    b = gemma.generate(PROMPTS, TopKAcceptance(k=1), s, seed=9)
    assert torch.equal(a.tokens, b.tokens)
    assert [x.accepted.tolist() for x in a.steps] == [x.accepted.tolist() for x in b.steps]
    assert all(x.accepted.sum(-1).tolist() == [x.step + 1] * 2 for x in a.steps)


def test_settings_and_rules_validate_with_clear_messages(gemma, tmp_path):
    for kwargs, match in [({"max_denoising_steps": 0}, "max_denoising_steps"), ({"t_min": 0.9}, "t_min"),
                          ({"stability_threshold": -1}, "stability_threshold"),
                          ({"confidence_threshold": 0}, "confidence_threshold")]:
        with pytest.raises(ValueError, match=match):
            GemmaSampling(**kwargs)
    # an integer threshold is fine here (transformers' own validate() raises AttributeError on it)
    assert GemmaSampling(confidence_threshold=1).generate_kwargs()["confidence_threshold"] == 1.0
    with pytest.raises(ValueError, match="k=0"):
        build_acceptance("top_k", k=0)
    with pytest.raises(ValueError, match="threshold=1.5"):
        build_acceptance("threshold", threshold=1.5)
    with pytest.raises(ValueError, match="entropy_bound"):
        build_acceptance("entropy_bound", entropy_bound=-1.0)
    with pytest.raises(ValueError, match="no parameter"):
        build_acceptance("entropy_bound", sticky=True)
    with pytest.raises(ValueError, match="unknown acceptance rule"):
        build_acceptance("nope")
    assert isinstance(RecordingSampler(TopKAcceptance(), C, 10, 4).initialize_canvas(2, torch.device("cpu")),
                      torch.Tensor)
    with pytest.raises(DLLMError, match="no mask token"):
        load_dllm(gemma_folder(gemma), mask_id=5)


def gemma_folder(gemma) -> str:
    return gemma.model.config._name_or_path


def test_the_masked_sampler_refuses_diffusion_gemma_clearly(gemma):
    from unmasker import SamplerConfig, build_policy, generate

    with pytest.raises(DLLMError, match="not a masked dLLM"):
        generate(gemma, build_policy("top_k_confidence"), PROMPTS, SamplerConfig(8, 8))


def test_cli_names_the_right_entry_point(gemma, capsys):
    from unmasker.cli import main

    assert main(["generate", "--model", gemma_folder(gemma), "--device", "cpu", "sort : 15 3"]) != 0
    assert "GemmaDLLM.generate" in capsys.readouterr().err
