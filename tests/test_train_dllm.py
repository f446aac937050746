import json
import os

import pytest
import torch

from training.train_dllm import DLLMTrainConfig, diffusion_loss, main, make_batch


def _tiny_args(out, steps):
    return ["--output_dir", out, "--hidden_size", "32", "--num_layers", "1", "--num_heads", "2",
            "--intermediate_size", "64", "--batch_size", "8", "--max_steps", str(steps), "--eval_every", "2",
            "--eval_problems", "4", "--save_every", "2", "--warmup_steps", "1",
            "--mixture", "sorting:1,sudoku:1"]


def test_tiny_training_run_saves_a_loadable_model_and_resumes(tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    out = str(tmp_path / "m")
    main(_tiny_args(out, 4) + ["--stop_at_step", "2"])  # a 4-step schedule, stopped (and saved) at step 2
    log = [json.loads(line) for line in open(os.path.join(out, "train_log.jsonl"))]
    assert log[-1]["step"] == 2 and torch.isfinite(torch.tensor(log[-1]["loss"]))
    assert set(log[-1]["val"]) == {"word_problems", "sudoku"}
    first = load_file(os.path.join(out, "model.safetensors"))
    # resume: continues at step 2 and runs to 4; weights change
    main(_tiny_args(out, 4))
    card = json.load(open(os.path.join(out, "card.json")))
    assert card["steps"] == 4
    second = load_file(os.path.join(out, "model.safetensors"))
    assert any(not torch.equal(first[k], second[k]) for k in first)
    # loads like any hub model, offline, and the tokenizer knows the special tokens
    model = AutoModelForMaskedLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.mask_token == "[MASK]" and tok.eos_token == "[EOS]" and tok.pad_token_id != tok.mask_token_id
    assert model.config.vocab_size == len(tok)


def test_resume_refuses_another_architecture(tmp_path):
    out = str(tmp_path / "m")
    main(_tiny_args(out, 4) + ["--stop_at_step", "2"])  # a 4-step schedule, stopped (and saved) at step 2
    args = _tiny_args(out, 4)
    args[args.index("--hidden_size") + 1] = "48"
    with pytest.raises(ValueError, match="another architecture"):
        main(args)


def test_loss_masks_only_the_response_and_weights_by_one_over_t():
    from training.tasks import get_task
    from training.tokenizer import build_tokenizer

    tok = build_tokenizer(samples_per_task=50)
    task = get_task("sorting")
    import random

    problems = [task.sample(random.Random(0)) for _ in range(3)]
    x, a, r = make_batch(tok, task, problems, "cpu")
    assert r.sum(-1).tolist() == [task.gen_length] * 3  # response region = generation length
    assert (x[:, -task.gen_length:] == tok.eos_token_id).any()  # EOS padding as LLaDA

    seen = {}

    class Spy(torch.nn.Module):
        def forward(self, input_ids, attention_mask, position_ids):
            seen["ids"] = input_ids
            logits = torch.zeros(*input_ids.shape, len(tok))
            return type("O", (), {"logits": logits})()

    loss = diffusion_loss(Spy(), x, a, r, tok.mask_token_id, 1e-3, torch.Generator().manual_seed(0))
    masked = seen["ids"] == tok.mask_token_id
    assert not (masked & ~r).any()  # the prompt is never masked
    assert masked.any()
    # uniform logits: CE = log V on every masked token, so loss = sum_i n_i log V / t_i / #response tokens
    t = 1e-3 + (1 - 1e-3) * torch.rand(3, generator=torch.Generator().manual_seed(0))
    n = masked.sum(-1).float()
    expect = (n * torch.log(torch.tensor(float(len(tok)))) / t).sum() / r.sum()
    assert loss.item() == pytest.approx(expect.item(), rel=1e-5)


def test_ordered_mask_is_a_semi_ar_state_on_hand_built_rows():
    from training.train_dllm import ordered_mask

    is_resp = torch.zeros(2, 20, dtype=torch.bool)
    is_resp[0, 4:] = True  # 16 response positions after a 4-token prompt
    is_resp[1, 2:] = True
    content = torch.tensor([9, 3])  # row 0: blocks of 4 start at 0, 4, 8 (8 holds the end); row 1: only 0
    starts = {0: set(), 1: set()}
    for seed in range(60):
        for t in (0.0, 1.0, 0.5):
            m = ordered_mask(is_resp, content, torch.tensor([t, t]), 4, torch.Generator().manual_seed(seed))
            assert not (m & ~is_resp).any()  # the prompt is never masked
            for row, first in ((0, 4), (1, 2)):
                rel = m[row, first:]
                if t == 0.0:  # the block is clean: a clean prefix, then everything masked
                    s = int(rel.int().argmax())
                    assert rel[s:].all() and not rel[:s].any() and s % 4 == 0
                    starts[row].add(s - 4)
                if t == 1.0:  # the block too: everything from its start is masked
                    s = int(rel.int().argmax())
                    assert rel[s:].all() and not rel[:s].any()
    assert starts == {0: {0, 4, 8}, 1: {0}}


def test_ordered_rows_weigh_by_their_masked_share():
    from training.tasks import get_task
    from training.tokenizer import build_tokenizer

    tok = build_tokenizer(samples_per_task=50)
    task = get_task("sorting")
    import random

    x, a, r = make_batch(tok, task, [task.sample(random.Random(i)) for i in range(4)], "cpu")
    seen = {}

    class Spy(torch.nn.Module):
        def forward(self, input_ids, attention_mask, position_ids):
            seen["ids"] = input_ids
            return type("O", (), {"logits": torch.zeros(*input_ids.shape, len(tok))})()

    with pytest.raises(ValueError, match="eos_id"):
        diffusion_loss(Spy(), x, a, r, tok.mask_token_id, 1e-3, torch.Generator(), ordered_share=1.0)
    loss = diffusion_loss(Spy(), x, a, r, tok.mask_token_id, 1e-3, torch.Generator().manual_seed(0),
                          ordered_share=1.0, ordered_block=4, eos_id=tok.eos_token_id)
    masked = seen["ids"] == tok.mask_token_id
    assert not (masked & ~r).any()
    # every row ordered: uniform logits give CE = log V per masked token, weighted by
    # #response / #masked per row, so each row with a masked token contributes #response * log V
    # (a row whose start is its last block can draw no masked token: it adds nothing)
    hit = masked.any(-1)
    assert hit.sum() >= 2
    expect = torch.log(torch.tensor(float(len(tok)))) * r.sum(-1)[hit].float().sum() / r.sum()
    assert loss.item() == pytest.approx(expect.item(), rel=1e-5)
    # share 0 is the uniform objective exactly (same draws)
    g0, g1 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert diffusion_loss(Spy(), x, a, r, tok.mask_token_id, 1e-3, g0).item() == pytest.approx(
        diffusion_loss(Spy(), x, a, r, tok.mask_token_id, 1e-3, g1, ordered_share=0.0, eos_id=2).item())


def test_config_validation():
    with pytest.raises(ValueError, match="mixture"):
        DLLMTrainConfig(mixture="nope:1")
    with pytest.raises(ValueError, match="hidden_size"):
        DLLMTrainConfig(hidden_size=30, num_heads=4)
    with pytest.raises(ValueError, match="eps"):
        DLLMTrainConfig(eps=0.0)
    with pytest.raises(ValueError, match="stop_at_step"):
        DLLMTrainConfig(stop_at_step=-1)
    with pytest.raises(ValueError, match="eval_tasks"):
        DLLMTrainConfig(eval_tasks="everyday,nope")
    with pytest.raises(ValueError, match="ordered_share"):
        DLLMTrainConfig(ordered_share=1.5)
    with pytest.raises(ValueError, match="ordered_block"):
        DLLMTrainConfig(ordered_block=0)


def test_warmup_cosine_hand_numbers():
    from training.schedules import warmup_cosine

    assert warmup_cosine(0, 10, 110) == pytest.approx(0.1)  # linear warmup
    assert warmup_cosine(10, 10, 110) == pytest.approx(1.0)  # peak
    assert warmup_cosine(60, 10, 110) == pytest.approx(0.5)  # half way down the cosine
    assert warmup_cosine(110, 10, 110, floor=0.1) == pytest.approx(0.1)  # ends at the floor
    assert warmup_cosine(500, 10, 110) == pytest.approx(0.0)  # stays there


def test_dllm_card_row_measures_length_and_eos_first(tiny_dllm):
    from training.dllm_card import measure_row, table

    row = measure_row(tiny_dllm, "word_problems", "top_k_confidence", {"k": 16}, "full", 16, n=4, batch_size=2)
    assert (row["block_length"], row["gen_length"], row["n"]) == (16, 16, 4)
    assert row["nfe"] == 1.0                       # one step commits the whole canvas
    assert 0 <= row["eos_first"] <= 1 and 0 <= row["response_tokens"] <= 16
    assert "response tokens" in table([row]) and table([{**row, "response_tokens": None}]).endswith("| – |")


def test_full_diffusion_failure_summary_compares_with_semi_ar_at_the_same_canvas():
    from training.dllm_card import failure_summary

    def row(block, acc, L=128, k=2, eos=0.0):
        return {"task": "word_problems", "policy": "top_k_confidence", "params": {"k": k}, "block_length": block,
                "gen_length": L, "n": 10, "accuracy": acc, "nfe": L / k, "eos_first": eos, "response_tokens": 9.0}

    rows = [row(8, 0.80), row(128, 0.65, eos=1.0), row(8, 0.80, k=4), row(128, 0.75, k=4),
            row(8, 0.9, L=48), row(48, 0.9, L=48), row(128, 0.1, k=8)]   # the last has no semi-AR twin
    lines = failure_summary(rows)
    assert len(lines) == 3
    assert lines[0].startswith("FAILS: word_problems L=128") and "(-15.0 points)" in lines[0]
    assert "EOS first in 100% vs 0%" in lines[0]
    assert lines[1].startswith("holds:") and "(-5.0 points)" in lines[1]
    assert lines[2].startswith("holds: word_problems L=48") and "(+0.0 points)" in lines[2]


def test_init_from_copies_weights_and_matches_embeddings_by_token(tmp_path):
    from transformers import AutoTokenizer, BertForMaskedLM

    out = str(tmp_path / "a")
    main(_tiny_args(out, 1))
    src, src_tok = BertForMaskedLM.from_pretrained(out), AutoTokenizer.from_pretrained(out)
    warm = str(tmp_path / "b")
    args = _tiny_args(warm, 1) + ["--init_from", out, "--lr", "1e-12", "--seed", "5"]  # a step that changes ~nothing
    main(args)
    got, tok = BertForMaskedLM.from_pretrained(warm), AutoTokenizer.from_pretrained(warm)
    layer = "bert.encoder.layer.0.attention.self.query.weight"
    assert torch.allclose(got.state_dict()[layer], src.state_dict()[layer], atol=1e-6)
    for word in ("sudoku", "7", "[EOS]"):
        i, j = tok.convert_tokens_to_ids(word), src_tok.convert_tokens_to_ids(word)
        assert torch.allclose(got.bert.embeddings.word_embeddings.weight[i],
                              src.bert.embeddings.word_embeddings.weight[j], atol=1e-6)
    bad = _tiny_args(str(tmp_path / "c"), 1) + ["--init_from", out]
    bad[bad.index("--hidden_size") + 1] = "48"
    with pytest.raises(ValueError, match="hidden_size is 32 there, 48 here"):
        main(bad)


def test_dllm_card_only_phenomena_keeps_the_stored_accuracy(tiny_model_dir, tmp_path, monkeypatch):
    import shutil

    from training import dllm_card

    folder = str(tmp_path / "m")
    shutil.copytree(tiny_model_dir, folder)
    stored = {"accuracy": {"word_problems": 0.5}, "n": 1000}
    with open(os.path.join(folder, "card.json"), "w") as f:
        json.dump({"name": "m", "measured": stored}, f)
    monkeypatch.setattr(dllm_card, "PHENOMENA_CORE", [("word_problems", "top_k_confidence", {"k": 16}, "full", 16)])
    assert dllm_card.main(["--model", folder, "--only_phenomena", "--phenomena_core", "--phenomena_n", "2",
                           "--write", "--cache_dir", ""]) == 0
    with open(os.path.join(folder, "card.json")) as f:
        measured = json.load(f)["measured"]
    assert measured["accuracy"] == stored["accuracy"] and measured["n"] == 1000   # not re-measured, not lost
    assert [(r["gen_length"], r["n"]) for r in measured["phenomena"]] == [(16, 2)]
    with pytest.raises(SystemExit):   # --check needs the accuracy rows
        dllm_card.main(["--model", folder, "--only_phenomena", "--check"])


def test_dllm_card_resumes_row_by_row_and_check_measures_afresh(tiny_model_dir, tmp_path, monkeypatch):
    from training import dllm_card

    calls = []
    real = dllm_card.measure_row

    def counting(dllm, *spec, **kw):
        calls.append(spec[0])
        return real(dllm, *spec, **kw)

    monkeypatch.setattr(dllm_card, "measure_row", counting)
    monkeypatch.setattr(dllm_card, "ACCURACY_ROWS", [("word_problems", "top_k_confidence", {"k": 16}, "full", 16),
                                                     ("sorting", "top_k_confidence", {"k": 16}, "full", 16)])
    monkeypatch.setattr(dllm_card, "unknown_word_row", lambda dllm, n: {"n": n, "accuracy": 0.0,
                                                                        "accuracy_unknown_detail": 0.0, "same_answer": 1.0})
    cache = str(tmp_path / "cache")
    args = ["--model", tiny_model_dir, "--n", "2", "--cache_dir", cache]
    assert dllm_card.main(args) == 0 and calls == ["word_problems", "sorting"]
    (line,) = open(os.path.join(cache, os.listdir(cache)[0])).readlines()[:1]
    assert json.loads(line)["row"]["task"] == "word_problems" and json.loads(line)["row"]["n"] == 2
    assert dllm_card.main(args) == 0 and len(calls) == 2           # both rows come from the cache
    assert dllm_card.main(args[:-2] + ["--cache_dir", cache, "--n", "3"]) == 0 and len(calls) == 4  # new n: measured
    dllm_card.main(args + ["--check"])
    assert len(calls) == 6                                          # --check never trusts the cache
