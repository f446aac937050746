"""`UnmaskPolicyScheduler` inside diffusers' `LLaDA2Pipeline`: hand-built logits first (no model),
then the embedded dLLM end to end against our own sampler, token for token."""

import os
import re
import subprocess
import sys

import pytest
import torch

pytest.importorskip("diffusers")
from diffusers import LLaDA2Pipeline  # noqa: E402

from unmasker import SamplerConfig, build_policy, generate, load_dllm  # noqa: E402
from unmasker.diffusers_scheduler import DLLMPipelineModel, UnmaskPolicyScheduler  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EMBEDDED = os.path.join(REPO, "checkpoints", "tiny-dllm")
POLICIES = os.path.join(REPO, "checkpoints", "policies")
MASK, V = 0, 6
DEVICE = os.environ.get("UNMASKER_TEST_DEVICE", "cpu")  # benchmarks/gpu_conformance.sh sets cuda


def _logits(probs_of_best: list[float], best: list[int]) -> torch.Tensor:
    """(1, L, V) logits whose top token at position i is best[i] with probability probs_of_best[i]."""
    L = len(best)
    p = torch.full((1, L, V), 0.0)
    for i, (q, tok) in enumerate(zip(probs_of_best, best)):
        p[0, i, 1:] = (1 - q) / (V - 2)
        p[0, i, tok] = q
    p[..., MASK] = 1e-9
    return p.log()


def test_step_commits_top_k_of_masked_non_prompt_positions():
    sch = UnmaskPolicyScheduler(policy="top_k_confidence", policy_params={"k": 2}, block_length=6, gen_length=4)
    sch.set_timesteps(6, block_length=6)
    sample = torch.tensor([[4, 5, MASK, MASK, MASK, MASK]])  # two prompt tokens, then four masks
    prompt_mask = torch.tensor([True, True, False, False, False, False])
    logits = _logits([0.99, 0.99, 0.5, 0.9, 0.3, 0.8], [4, 5, 1, 2, 3, 1])
    out = sch.step(logits, 0, sample, mask_token_id=MASK, prompt_mask=prompt_mask, threshold=0.0)
    assert out.transfer_index.tolist() == [[False, False, False, True, False, True]]  # 0.9 and 0.8, never the prompt
    assert out.prev_sample.tolist() == [[4, 5, MASK, 2, MASK, 1]]
    assert not out.editing_transfer_index.any()
    assert out.sampled_probs[0, 3].item() == pytest.approx(0.9, abs=1e-6)
    assert sch.nfe.tolist() == [1] and sch.forward_passes == 1
    # the pipeline's `threshold` is not a second channel: it changed nothing above (0.0 would commit all)


def test_last_step_of_the_budget_commits_the_rest_and_counts_it():
    sch = UnmaskPolicyScheduler(policy="top_k_confidence", policy_params={"k": 1}, block_length=4, gen_length=4)
    sch.set_timesteps(2, block_length=4)
    sample = torch.full((1, 4), MASK)
    logits = _logits([0.5, 0.9, 0.3, 0.8], [1, 2, 3, 1])
    first = sch.step(logits, 0, sample, mask_token_id=MASK)
    assert first.transfer_index.sum().item() == 1 and sch.forced.tolist() == [0]
    assert sch.check_block_should_continue(1, True, False, first.editing_transfer_index, 0, 0, torch.tensor([False]))
    second = sch.step(logits, 1, first.prev_sample, mask_token_id=MASK)
    assert second.transfer_index.sum().item() == 3 and sch.forced.tolist() == [2]
    assert (second.prev_sample != MASK).all()
    assert not sch.check_block_should_continue(2, True, False, second.editing_transfer_index, 0, 0, torch.tensor([False]))


def test_finished_rows_spend_no_nfe_and_stop_the_block():
    sch = UnmaskPolicyScheduler(policy="top_k_confidence", block_length=4, gen_length=4)
    sch.set_timesteps(4, block_length=4)
    sample = torch.full((2, 4), MASK)
    logits = _logits([0.5, 0.9, 0.3, 0.8], [1, 2, 3, 1]).expand(2, -1, -1)
    out = sch.step(logits, 0, sample, mask_token_id=MASK)
    finished = torch.tensor([True, False])
    assert sch.check_block_should_continue(1, True, False, out.editing_transfer_index, 0, 0, finished)
    out = sch.step(logits, 1, out.prev_sample, mask_token_id=MASK)
    assert sch.nfe.tolist() == [1, 2]
    assert out.transfer_index[0].sum().item() == 0 and out.transfer_index[1].sum().item() == 1


def test_rejects_what_it_cannot_honour():
    with pytest.raises(ValueError, match="threshold"):
        UnmaskPolicyScheduler(policy="confidence_threshold", policy_params={"threshold": 1.7})
    with pytest.raises(ValueError, match="unknown policy"):
        UnmaskPolicyScheduler(policy="nope")
    with pytest.raises(ValueError, match="eos_token_id"):  # the pipeline never tells step() the EOS id
        UnmaskPolicyScheduler(policy="eos_rejection")
    with pytest.raises(ValueError, match="gen_length"):
        UnmaskPolicyScheduler(gen_length=0)
    sch = UnmaskPolicyScheduler(block_length=4, gen_length=4)
    sample, logits = torch.full((1, 4), MASK), _logits([0.5] * 4, [1] * 4)
    with pytest.raises(ValueError, match="uniform-noise"):
        sch.step(logits, 0, sample, mask_token_id=None)
    with pytest.raises(ValueError, match="top_k"):
        sch.step(logits, 0, sample, mask_token_id=MASK, top_k=5)


# -- end to end: the embedded dLLM inside LLaDA2Pipeline -----------------------------------------

needs_embedded = pytest.mark.skipif(not os.path.isdir(EMBEDDED), reason="shipped checkpoints/tiny-dllm absent")


@pytest.fixture(scope="module")
def embedded():
    if DEVICE.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip(f"UNMASKER_TEST_DEVICE={DEVICE} but CUDA is not available")
    return load_dllm(EMBEDDED, device=DEVICE)


def _pipe(dllm, scheduler, model=None):
    pipe = LLaDA2Pipeline(model=model if model is not None else dllm.model, scheduler=scheduler,
                          tokenizer=dllm.tokenizer)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@needs_embedded
@pytest.mark.parametrize("name,params", [
    ("top_k_confidence", {"k": 1}), ("top_k_confidence", {"k": 3}), ("confidence_threshold", {"threshold": 0.9}),
    ("eb_sampler", {"gamma": 1.0}), ("learned", {"checkpoint": os.path.join(POLICIES, "full-a1")}),
    ("eos_rejection", {"k": 2}), ("eos_rejection_ass", {}),
])
def test_full_diffusion_equals_our_sampler_token_for_token(embedded, name, params):
    """One block holding prompt + generation: the pipeline's model call is then exactly ours, so
    the tokens, the NFE and (for the learned policy) the Bernoulli draws must all agree."""
    prompt = "Mia has 7 apples . She buys 5 more . How many apples does Mia have now ?"
    G = 24
    P = embedded.encode([prompt])[0].shape[1]
    ours = generate(embedded, build_policy(name, **params), [prompt], SamplerConfig(gen_length=G, block_length=G))
    sch = UnmaskPolicyScheduler(policy=name, policy_params=params, block_length=P + G, gen_length=G,
                                eos_token_id=list(embedded.eos_ids))
    out = _pipe(embedded, sch)(prompt=prompt, gen_length=G, num_inference_steps=G, eos_early_stop=False)
    assert out.sequences.tolist() == ours.tokens.tolist()
    assert sch.nfe.tolist() == ours.nfe.tolist() and sch.forward_passes == int(ours.nfe[0])
    assert sch.forced.tolist() == [0]
    assert out.texts[0].strip() == ours.texts[0]


@needs_embedded
def test_semi_ar_commits_follow_the_policy_step_by_step(embedded):
    """Blocks of 8, k = 2: every pass commits exactly two masked positions of each unfinished row,
    the two with the highest probability, and the NFE the scheduler reports is the pass count."""
    prompts = ["sort : 15 3 9 27", "Tom has 3 pens . He buys 4 more . How many pens does Tom have now ?"]
    ids, att = embedded.encode(prompts)
    sch = UnmaskPolicyScheduler(policy="top_k_confidence", policy_params={"k": 2}, block_length=8, gen_length=48)
    seen = []

    def record(pipe, step, timestep, kw):
        seen.append({k: v.clone() for k, v in kw.items()})
        return {}

    out = _pipe(embedded, sch, DLLMPipelineModel(embedded))(
        input_ids=ids, attention_mask=att, gen_length=48, num_inference_steps=8, eos_early_stop=False,
        callback_on_step_end=record, callback_on_step_end_tensor_inputs=["transfer_index", "sampled_probs", "active_block"])
    # blocks are aligned to the prompt start: masks per generation block, then ceil(m / 2) passes each
    P, G, BL = ids.shape[1], 48, 8
    masks = [min((b + 1) * BL, P + G) - max(b * BL, P) for b in range(P // BL, -(-(P + G) // BL))]
    masks[-1] += -(-(P + G) // BL) * BL - (P + G)  # the pipeline also fills the block-aligned tail
    passes = sum(-(-m // 2) for m in masks)
    assert len(seen) == sch.forward_passes == passes
    for rec in seen:
        commit, probs, was_masked = rec["transfer_index"], rec["sampled_probs"], rec["active_block"]
        assert (commit <= was_masked).all()
        for b in range(2):
            n_masked = int(was_masked[b].sum())
            assert int(commit[b].sum()) == min(2, n_masked)
            if n_masked > 2:
                assert probs[b][commit[b]].min() >= probs[b][was_masked[b] & ~commit[b]].max()
    assert sch.nfe.tolist() == [passes, passes] and sch.forced.tolist() == [0, 0]
    assert (out.sequences != embedded.mask_id).all()


@needs_embedded
def test_learned_policy_in_the_pipeline_is_seeded_and_reports_nfe(embedded):
    prompt = "Tom has 3 pens . He buys 4 more . How many pens does Tom have now ?"
    params = {"checkpoint": os.path.join(POLICIES, "v3-semiar-a1"), "temperature": 0.5}
    runs = []
    for _ in range(2):
        sch = UnmaskPolicyScheduler(policy="learned", policy_params=params, block_length=8, gen_length=48, seed=3)
        out = _pipe(embedded, sch)(prompt=prompt, gen_length=48, num_inference_steps=8)
        runs.append((out.sequences.tolist(), sch.nfe.tolist(), sch.forward_passes))
    assert runs[0] == runs[1]
    seq, nfe, passes = runs[0][0][0], runs[0][1][0], runs[0][2]
    assert 1 <= nfe == passes < 48  # fewer passes than one per token: the policy commits several at once
    eos = seq.index(embedded.eos_ids[0])
    assert embedded.mask_id not in seq[:eos]


@needs_embedded
def test_adapter_makes_left_padding_invisible(embedded):
    """Two prompts whose lengths differ by one block (8): row 0 is left-padded by 8, so its blocks
    align as when it runs alone. Through `DLLMPipelineModel` (positions from the attention mask)
    it gives the same tokens as alone; the bare model (the pipeline's arange positions) does not."""
    short, long = "sort : 15 3 9 27 4 8 1 2", "sort : 15 3 9 27 4 8 1 2 5 6 7 11 12 13 14 16"
    ids, att = embedded.encode([short, long])
    assert int(att[0].sum()) + 8 == ids.shape[1]

    def run(model, input_ids, attention_mask):
        sch = UnmaskPolicyScheduler(policy="top_k_confidence", block_length=8, gen_length=16)
        return _pipe(embedded, sch, model)(input_ids=input_ids, attention_mask=attention_mask, gen_length=16,
                                           num_inference_steps=8, eos_early_stop=False).sequences

    alone = run(embedded.model, ids[:1, 8:], att[:1, 8:])
    assert run(DLLMPipelineModel(embedded), ids, att)[0].tolist() == alone[0].tolist()
    assert run(embedded.model, ids, att)[0].tolist() != alone[0].tolist()


@needs_embedded
def test_scheduler_config_round_trip(embedded, tmp_path):
    params = {"checkpoint": os.path.join(POLICIES, "v3-semiar-a1"), "temperature": 0.5}
    sch = UnmaskPolicyScheduler(policy="learned", policy_params=params, block_length=8, gen_length=48, seed=1)
    sch.save_pretrained(str(tmp_path))
    again = UnmaskPolicyScheduler.from_pretrained(str(tmp_path))
    # diffusers' own bookkeeping of which arguments were left at their defaults is not saved
    plain = lambda c: {k: v for k, v in dict(c).items() if k != "_use_default_values"}  # noqa: E731
    assert plain(again.config) == plain(sch.config) and again.config.eos_token_id is None
    prompt = "sort : 15 3 9 27"
    a = _pipe(embedded, sch)(prompt=prompt, gen_length=16, num_inference_steps=8).sequences
    b = _pipe(embedded, again)(prompt=prompt, gen_length=16, num_inference_steps=8).sequences
    assert a.tolist() == b.tolist()


@needs_embedded
def test_readme_snippet_runs(tmp_path):
    """The README's diffusers snippet, verbatim, from the repository root."""
    with open(os.path.join(REPO, "README.md")) as f:
        readme = f.read()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "LLaDA2Pipeline" in b]
    assert len(blocks) == 1, "README needs one python block that uses LLaDA2Pipeline"
    env = dict(os.environ, PYTHONPATH=REPO)
    res = subprocess.run([sys.executable, "-c", blocks[0]], cwd=REPO, capture_output=True, text=True,
                         timeout=120, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip(), "the snippet prints the answer and the NFE"


def test_import_unmasker_does_not_import_diffusers():
    code = "import sys, unmasker; assert 'diffusers' not in sys.modules; unmasker.UnmaskPolicyScheduler; " \
           "assert 'diffusers' in sys.modules"
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=REPO))
    assert res.returncode == 0, res.stderr[-2000:]
