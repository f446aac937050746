"""Loading a dLLM and the backend differences `DLLM.logits` hides (anchors 1.2, paper 1.2)."""

import shutil
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from unmasker import DLLM, DLLMError, load_dllm


def test_load_tiny_folder(tiny_model_dir, tiny_dllm):
    tok = tiny_dllm.tokenizer
    assert tiny_dllm.backend == "masked_lm"
    assert tiny_dllm.mask_id == tok.mask_token_id
    assert tiny_dllm.eos_ids == (tok.eos_token_id,)
    assert tiny_dllm.pad_id == tok.pad_token_id != tiny_dllm.mask_id
    assert tiny_dllm.max_positions == 256
    assert not any(p.requires_grad for p in tiny_dllm.model.parameters())
    ids, att = tiny_dllm.encode(["sort : 3 1 2"])
    logits = tiny_dllm.logits(ids, att)
    assert logits.shape == (1, ids.shape[1], len(tok))


def test_mask_id_mismatch_is_an_error(tiny_model_dir, tiny_dllm):
    wrong = tiny_dllm.mask_id + 1
    with pytest.raises(DLLMError, match=f"mask_id={wrong} disagrees"):
        load_dllm(tiny_model_dir, mask_id=wrong, device="cpu")
    assert load_dllm(tiny_model_dir, mask_id=tiny_dllm.mask_id, device="cpu").mask_id == tiny_dllm.mask_id


def test_folder_without_config_is_an_error(tiny_model_dir, tmp_path):
    broken = tmp_path / "no-config"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "config.json").unlink()
    with pytest.raises(DLLMError, match="no config.json"):
        load_dllm(str(broken), device="cpu")


def test_unknown_backend_is_an_error(tiny_model_dir):
    with pytest.raises(DLLMError, match="backend='gpt'"):
        load_dllm(tiny_model_dir, backend="gpt", device="cpu")


def test_decode_cuts_at_eos_and_drops_masks(tiny_dllm):
    tok = tiny_dllm.tokenizer
    ids = tok("sort : 3 1 2", add_special_tokens=False)["input_ids"]
    row = [ids[0], tiny_dllm.mask_id, *ids[1:], tiny_dllm.eos_ids[0], ids[0]]
    assert tiny_dllm.decode(torch.tensor([row])) == ["sort : 3 1 2"]


# -- backends, with a fake network ----------------------------------------------------------------------
class PositionNet(nn.Module):
    """Fake remote-code dLLM: logits[b, i, 0] = i, logits[b, i, 1] = the input id at i. Records kwargs."""

    def __init__(self, vocab=8):
        super().__init__()
        self.vocab, self.kwargs = vocab, None
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, input_ids, **kwargs):
        self.kwargs = kwargs
        B, T = input_ids.shape
        out = torch.zeros(B, T, self.vocab)
        out[..., 0] = torch.arange(T, dtype=torch.float32)
        out[..., 1] = input_ids.float()
        return SimpleNamespace(logits=out)


def fake_dllm(backend):
    return DLLM(model=PositionNet(), tokenizer=None, mask_id=7, eos_ids=(6,), pad_id=5, backend=backend)


def test_dream_logits_are_shifted_right_by_one():
    dllm = fake_dllm("dream")
    ids = torch.tensor([[1, 2, 3, 7, 7]])
    logits = dllm.logits(ids, torch.ones_like(ids))
    # position i is predicted from the hidden state at i - 1 (Qwen-initialised, anchors 1.2)
    assert logits[0, :, 0].tolist() == [0, 0, 1, 2, 3]
    assert logits[0, :, 1].tolist() == [1, 1, 2, 3, 7]
    assert dllm.model.kwargs == {"attention_mask": "full"}   # Dream's own generate() does this without padding


def test_dream_padded_batch_gets_a_4d_mask_and_position_ids():
    dllm = fake_dllm("dream")
    ids = torch.tensor([[5, 5, 1, 7], [1, 2, 3, 7]])
    att = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    dllm.logits(ids, att)
    kw = dllm.model.kwargs
    assert kw["attention_mask"].shape == (2, 1, 4, 4) and kw["attention_mask"].dtype == torch.bool
    assert not kw["attention_mask"][0, 0, 2, :2].any() and kw["attention_mask"][0, 0, 2, 2:].all()
    assert kw["position_ids"].tolist() == [[0, 0, 0, 1], [0, 1, 2, 3]]


def test_llada_logits_pass_through():
    dllm = fake_dllm("llada")
    ids = torch.tensor([[1, 2, 3, 7, 7]])
    att = torch.ones_like(ids)
    logits = dllm.logits(ids, att)
    assert logits[0, :, 0].tolist() == [0, 1, 2, 3, 4]
    assert logits[0, :, 1].tolist() == [1, 2, 3, 7, 7]
    assert set(dllm.model.kwargs) == {"attention_mask"} and dllm.model.kwargs["attention_mask"] is att


@pytest.mark.parametrize("kw, match", [({"backend": "gpt"}, "backend"), ({"mask_id": -1}, "mask_id"),
                                       ({"pad_id": 7}, "pad_id == mask_id"), ({"eos_ids": ()}, "EOS")])
def test_dllm_validates_its_fields(kw, match):
    args = dict(model=PositionNet(), tokenizer=None, mask_id=7, eos_ids=(6,), pad_id=5)
    with pytest.raises(DLLMError, match=match):
        DLLM(**{**args, **kw})


# -- left padding ---------------------------------------------------------------------------------------
def test_left_padding_is_invisible(tiny_dllm):
    short, long = "sort : 3 1 2", "Mia has 12 apples . She buys 3 more . How many apples does Mia have now ?"
    ids, att = tiny_dllm.encode([short, long])
    alone_ids, alone_att = tiny_dllm.encode([short])
    assert att[0].sum() == alone_ids.shape[1] < ids.shape[1]   # the short prompt really is padded
    assert (ids[0, : ids.shape[1] - alone_ids.shape[1]] == tiny_dllm.pad_id).all()
    masks = torch.full((2, 6), tiny_dllm.mask_id)
    batched = tiny_dllm.logits(torch.cat([ids, masks], 1), torch.cat([att, torch.ones_like(masks)], 1))
    alone = tiny_dllm.logits(torch.cat([alone_ids, masks[:1]], 1), torch.cat([alone_att, torch.ones_like(masks[:1])], 1))
    P = alone_ids.shape[1] + 6
    assert torch.allclose(batched[0, -P:], alone[0], atol=1e-5)
    # without position ids from the mask, absolute positions would shift by the padding
    pos = torch.arange(ids.shape[1] + 6)[None].expand(2, -1)
    raw = tiny_dllm.model(input_ids=torch.cat([ids, masks], 1), attention_mask=torch.cat([att, torch.ones_like(masks)], 1),
                          position_ids=pos).logits
    assert not torch.allclose(raw[0, -P:], alone[0], atol=1e-5)


def test_backend_detected_from_plain_config_without_running_code(tmp_path):
    from unmasker.loading import DLLMError, detect_backend, raw_config

    assert detect_backend({"model_type": "llada"}) == "llada"
    assert detect_backend({"model_type": "Dream"}) == "dream"
    assert detect_backend({"model_type": "bert"}) == "masked_lm"
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(DLLMError, match="unreadable config.json"):
        raw_config(str(tmp_path))


# -- generation prefix (the paper opens LLaDA's answers with "<reasoning>") ------------------------------
def test_generation_prefix_follows_the_prompt_and_counts_against_its_budget(tiny_dllm):
    prompt = "Max has 26 pens . He gives 1 to Tom . How many pens does Max have in the end ?"
    so = tiny_dllm.tokenizer.convert_tokens_to_ids("so")
    plain, _ = tiny_dllm.encode([prompt])
    prefixed = tiny_dllm.with_prefix("so")
    assert prefixed.model is tiny_dllm.model and tiny_dllm.generation_prefix == ""
    ids, att = prefixed.encode([prompt, "sort : 3 1 2"])
    assert ids[0].tolist() == plain[0].tolist() + [so]
    assert ids[1, -1] == so and att[1, -1] == 1       # the shorter prompt is left-padded, prefix last
    n = plain.shape[1]
    tiny_dllm.encode([prompt], max_prompt_tokens=n)
    with pytest.raises(DLLMError, match=f"has {n + 1} tokens"):
        prefixed.encode([prompt], max_prompt_tokens=n)
    with pytest.raises(DLLMError, match="mask token"):
        tiny_dllm.with_prefix("so [MASK]").encode([prompt])


def test_generation_prefix_comes_after_the_chat_template(tiny_dllm):
    import copy
    import dataclasses

    tok = copy.deepcopy(tiny_dllm.tokenizer)
    tok.chat_template = "{% for m in messages %}{{ m['content'] }} ?{% endfor %}"
    chat = dataclasses.replace(tiny_dllm, tokenizer=tok, use_chat_template=True, generation_prefix="so")
    ids, _ = chat.encode(["how many pens"])
    assert tok.convert_ids_to_tokens(ids[0].tolist()) == ["how", "many", "pens", "?", "so"]


def test_file_tasks_carry_the_paper_prefix():
    from training.tasks import Task
    from training.tasks.real import GENERATION_PREFIX, FileTask

    assert FileTask.generation_prefix == GENERATION_PREFIX == "<reasoning>"
    assert Task.generation_prefix == ""
