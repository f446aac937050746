"""Conformance with the real LLaDA and Dream model code, under the installed transformers.

The model code is NVlabs/Fast-dLLM's copy of the hub files (`../shared/thirdparty/fast-dllm`,
kept outside this repository; the tests skip when it is absent). Each test builds a tiny
random-weight folder laid out like the hub's in a temp dir (config.json with `auto_map`, the .py
files copied in, a tokenizer with the real mask id and chat template), loads it through
`load_dllm`, and compares our one sampling loop with the reference decoders, token for token:

* LLaDA `generate` (low_confidence remasking)      vs `top_k_confidence`
* Fast-dLLM's threshold decoding (same `generate`)  vs `confidence_threshold`
* Fast-dLLM's factor rule                           vs `factor`
* Dream `diffusion_generate` (maskgit_plus/entropy) vs `top_k_confidence` / `entropy`, full diffusion

All comparisons are greedy (temperature 0): sampled runs use different random streams. Where we
differ on purpose, a test pins the difference (docs/real-models.md). The folders have tiny
hidden sizes but the real vocabularies (126464 / 152064, so that the real mask ids exist), so
each test runs in seconds on a CPU. `UNMASKER_TEST_DEVICE=cuda` runs the same tests on a GPU
(benchmarks/gpu_conformance.sh).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import types
import urllib.request
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# ../shared/thirdparty/fast-dllm beside the repository; UNMASKER_FAST_DLLM points elsewhere (a GPU host)
THIRDPARTY = Path(os.environ.get("UNMASKER_FAST_DLLM")
                  or Path(__file__).resolve().parents[2] / "shared" / "thirdparty" / "fast-dllm")
DEVICE = os.environ.get("UNMASKER_TEST_DEVICE", "cpu")

pytestmark = [
    pytest.mark.skipif(not (THIRDPARTY / "llada").is_dir(), reason=f"the real LLaDA/Dream model code is not at "
                       f"{THIRDPARTY} (NVlabs/Fast-dLLM's llada/ and dream/ folders, kept outside this repository; "
                       "set UNMASKER_FAST_DLLM to use another copy)"),
    pytest.mark.skipif(DEVICE.startswith("cuda") and not torch.cuda.is_available(),
                       reason=f"UNMASKER_TEST_DEVICE={DEVICE} but CUDA is not available"),
]

LLADA_MASK, LLADA_EOS, LLADA_EOT = 126336, 126081, 126348
DREAM_MASK, DREAM_EOS, DREAM_IM_END = 151666, 151643, 151645
# LLaDA-8B-Instruct's chat template (Llama-3 style headers, BOS first)
LLADA_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
# Dream-v0-Instruct-7B's chat template (Qwen2.5's, without the tool-calling branch)
DREAM_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}{%- if not (message.role == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
WORDS = ("sort : 0 1 2 3 4 5 6 7 8 9 10 12 15 20 the a is of and to how many apples has buys more now ? . user "
         "assistant").split()
PROMPTS = ["sort : 15 3 9 1", "how many apples has the 12 ?"]


# -- tiny folders ------------------------------------------------------------------------------------------
def _random_weights(folder: Path, active_ids, seed: int) -> None:
    """model.safetensors for the folder's own model class: unit norms, N(0, 1/fan_in) matrices, N(0, 1)
    embeddings, and an output head that is zero except for `active_ids`. The zero rows keep the
    ~130K unused tokens at logit 0, so the few active ones give peaked, varied confidences (a plain
    random head spreads every distribution over the whole vocabulary)."""
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModel

    from unmasker.dllm import adapt_remote_code

    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    adapt_remote_code(config, str(folder))
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in AutoModel.from_config(config, trust_remote_code=True).state_dict().items()}
    g = torch.Generator().manual_seed(seed)
    d = config.hidden_size
    tensors = {}
    for name, shape in shapes.items():
        if len(shape) == 1:
            t = torch.ones(shape) if name.endswith("weight") else torch.zeros(shape)
        elif name.endswith(("ff_out.weight", "lm_head.weight")) and shape[0] > 100_000:
            t = torch.zeros(shape)
            ids = torch.tensor(sorted(active_ids))
            t[ids] = torch.randn(len(ids), shape[1], generator=g) * (8.0 / d ** 0.5)  # logits ~ N(0, 8^2)
        elif shape[0] > 100_000:
            t = torch.randn(shape, generator=g)  # token embeddings
        else:
            t = torch.randn(shape, generator=g) / shape[1] ** 0.5
        tensors[name] = t.contiguous()
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})


def build_llada_folder(out: Path, seed: int = 0) -> Path:
    """A LLaDA-8B-Instruct-shaped folder: real code and vocabulary size, d_model 32, 2 layers."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    out.mkdir(parents=True, exist_ok=True)
    vocab_size = 126464
    special = {"<|startoftext|>": 126080, "<|endoftext|>": LLADA_EOS, "<|mdm_mask|>": LLADA_MASK,
               "<|start_header_id|>": 126346, "<|end_header_id|>": 126347, "<|eot_id|>": LLADA_EOT}
    names = {i: f"<|reserved_token_{i}|>" for i in range(vocab_size)}
    names.update(dict(enumerate(WORDS)))
    names.update({i: t for t, i in special.items()})
    tk = Tokenizer(models.WordLevel({t: i for i, t in names.items()}, unk_token=names[len(WORDS)]))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # As on the hub, <|mdm_mask|> is an additional special token but not `mask_token`: load_dllm
    # takes LLaDA's known mask id and checks it against the vocabulary.
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<|startoftext|>", eos_token="<|endoftext|>",
                                  unk_token=names[len(WORDS)],
                                  additional_special_tokens=["<|mdm_mask|>", "<|start_header_id|>",
                                                             "<|end_header_id|>", "<|eot_id|>"])
    tok.chat_template = LLADA_TEMPLATE
    tok.save_pretrained(str(out))
    for f in ("configuration_llada.py", "modeling_llada.py"):
        shutil.copy(THIRDPARTY / "llada" / "model" / f, out / f)
    config = {
        "architectures": ["LLaDAModelLM"], "model_type": "llada",
        "auto_map": {"AutoConfig": "configuration_llada.LLaDAConfig", "AutoModel": "modeling_llada.LLaDAModelLM",
                     "AutoModelForCausalLM": "modeling_llada.LLaDAModelLM"},
        "activation_type": "silu", "block_type": "llama", "d_model": 32, "n_heads": 2, "n_kv_heads": 2, "n_layers": 2,
        "mlp_hidden_size": 64, "mlp_ratio": 4, "vocab_size": vocab_size, "embedding_size": vocab_size,
        "max_sequence_length": 4096, "rope": True, "rope_theta": 500000.0, "rope_full_precision": True,
        "layer_norm_type": "rms", "rms_norm_eps": 1e-5, "layer_norm_with_affine": True, "bias_for_layer_norm": False,
        "attention_layer_norm": False, "attention_layer_norm_with_affine": True, "include_bias": False,
        "include_qkv_bias": False, "input_emb_norm": False, "scale_logits": False, "weight_tying": False,
        "alibi": False, "alibi_bias_max": 8.0, "flash_attention": False, "block_group_size": 1, "init_device": "meta",
        "init_fn": "mitchell", "init_std": 0.02, "attention_dropout": 0.0, "residual_dropout": 0.0,
        "embedding_dropout": 0.0, "eos_token_id": LLADA_EOS, "pad_token_id": LLADA_EOS,
        "mask_token_id": LLADA_MASK, "use_cache": False, "precision": "amp_bf16",
    }
    (out / "config.json").write_text(json.dumps(config, indent=1))
    _random_weights(out, set(range(len(WORDS))) | {LLADA_EOS, LLADA_EOT}, seed)
    return out


def _byte_alphabet() -> list[str]:
    """GPT-2's printable stand-ins for the 256 bytes (byte-level BPE, as Qwen's vocabulary starts)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = [b for b in range(256) if b not in keep]
    chars = {b: chr(b) for b in keep} | {b: chr(256 + i) for i, b in enumerate(extra)}
    return [chars[b] for b in range(256)]


def build_dream_folder(out: Path, seed: int = 0) -> Path:
    """A Dream-v0-Instruct-7B-shaped folder: real code (model, generation, tokenizer), real
    vocabulary size and special ids, hidden size 32, 2 layers."""
    out.mkdir(parents=True, exist_ok=True)
    alphabet = _byte_alphabet()
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    merges = [("s", "o"), ("so", "r"), ("sor", "t"), ("Ġ", "t"), ("Ġt", "h"), ("Ġth", "e"), ("Ġ", "a")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    n_regular = DREAM_EOS
    vocab.update({f"<unused_{i}>": i for i in range(len(vocab), n_regular)})
    (out / "vocab.json").write_text(json.dumps(vocab))
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n")
    added = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
             "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
             "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>",
             "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<|beginoftext|>",
             "<|mask|>"]
    assert DREAM_EOS + added.index("<|mask|>") == DREAM_MASK
    tok_config = {
        "added_tokens_decoder": {str(DREAM_EOS + i): {"content": t, "lstrip": False, "normalized": False,
                                                      "rstrip": False, "single_word": False, "special": True}
                                 for i, t in enumerate(added)},
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "auto_map": {"AutoTokenizer": ["tokenization_dream.DreamTokenizer", None]},
        "tokenizer_class": "DreamTokenizer", "bos_token": "<|beginoftext|>", "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>", "mask_token": "<|mask|>", "unk_token": None, "chat_template": DREAM_TEMPLATE,
        "clean_up_tokenization_spaces": False, "errors": "replace", "model_max_length": 131072,
        "split_special_tokens": False,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=1))
    for f in ("configuration_dream.py", "modeling_dream.py", "generation_utils.py", "tokenization_dream.py"):
        shutil.copy(THIRDPARTY / "dream" / "model" / f, out / f)
    config = {
        "architectures": ["DreamModel"], "model_type": "Dream",
        "auto_map": {"AutoConfig": "configuration_dream.DreamConfig", "AutoModel": "modeling_dream.DreamModel"},
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
        "num_key_value_heads": 1, "max_position_embeddings": 131072, "vocab_size": 152064, "hidden_act": "silu",
        "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "rope_scaling": None, "tie_word_embeddings": False,
        "use_cache": False, "use_sliding_window": False, "sliding_window": None, "max_window_layers": 28,
        "attention_dropout": 0.0, "initializer_range": 0.02, "mask_token_id": DREAM_MASK,
        "pad_token_id": DREAM_EOS, "bos_token_id": DREAM_EOS, "eos_token_id": DREAM_EOS, "torch_dtype": "float32",
    }
    (out / "config.json").write_text(json.dumps(config, indent=1))
    (out / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": DREAM_EOS, "eos_token_id": DREAM_EOS, "pad_token_id": DREAM_EOS}))
    active = {vocab[c] for c in "abcdefghijklmnorstuvwy0123456789Ġ:?."} | set(range(256, len(alphabet) + len(merges)))
    _random_weights(out, active | {DREAM_EOS, DREAM_IM_END}, seed)
    return out


@pytest.fixture(scope="module", autouse=True)
def _eager():
    """Fast-dLLM's copy of LLaDA wraps attention in `torch.compile`; compiling for every new shape
    costs far more than these tiny models' forward passes, and eager computes the same function."""
    import torch._dynamo

    before = torch._dynamo.config.disable
    torch._dynamo.config.disable = True
    yield
    torch._dynamo.config.disable = before


@pytest.fixture(scope="module")
def llada_dir(tmp_path_factory):
    return build_llada_folder(tmp_path_factory.mktemp("tiny-llada") / "LLaDA-8B-Instruct")


@pytest.fixture(scope="module")
def dream_dir(tmp_path_factory):
    return build_dream_folder(tmp_path_factory.mktemp("tiny-dream") / "Dream-v0-Instruct-7B")


@pytest.fixture(scope="module")
def llada(llada_dir):
    from unmasker import load_dllm

    return load_dllm(str(llada_dir), device=DEVICE, dtype=torch.float32)


@pytest.fixture(scope="module")
def dream(dream_dir):
    from unmasker import load_dllm

    return load_dllm(str(dream_dir), device=DEVICE, dtype=torch.float32)


@pytest.fixture(scope="module")
def fast_dllm(llada):
    """Fast-dLLM's llada/generate.py as a module. Its only import of the model code
    (`from model.modeling_llada import LLaDAModelLM`) is pointed at the module transformers
    already loaded from the tiny folder: the same file, imported once."""
    stub = types.ModuleType("model")
    stub.modeling_llada = sys.modules[type(llada.model).__module__]
    saved = {k: sys.modules.get(k) for k in ("model", "model.modeling_llada")}
    sys.modules.update({"model": stub, "model.modeling_llada": stub.modeling_llada})
    try:
        spec = importlib.util.spec_from_file_location("fast_dllm_llada_generate", THIRDPARTY / "llada" / "generate.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return module


# -- helpers -----------------------------------------------------------------------------------------------
def _ours(dllm, policy, prompts, gen_length, block_length):
    from unmasker import SamplerConfig, build_policy, generate

    name, params = policy
    return generate(dllm, build_policy(name, **params), prompts, SamplerConfig(gen_length, block_length))


def _prompt_ids(dllm, prompt):
    ids, _ = dllm.encode([prompt])
    return ids.to(dllm.device)


# -- loading -----------------------------------------------------------------------------------------------
def test_llada_loads_with_its_real_code(llada, llada_dir):
    from safetensors.torch import load_file

    assert type(llada.model).__name__ == "LLaDAModelLM" and llada.backend == "llada"
    assert llada.mask_id == LLADA_MASK and llada.eos_ids == (LLADA_EOS, LLADA_EOT) and llada.pad_id == LLADA_EOS
    assert llada.use_chat_template
    # the compatibility step only restores missing glue: every weight is the file's, none re-initialised
    state = llada.model.state_dict()
    for name, t in load_file(str(llada_dir / "model.safetensors")).items():
        assert torch.equal(state[name].cpu(), t), name
    ids, _ = llada.encode(["sort : 3 1"])
    assert ids[0, 0] == 126080 and ids[0, -1] == 126347  # BOS ... <|end_header_id|> of the assistant header
    assert llada.decode(torch.tensor([[WORDS.index("sort"), LLADA_MASK, WORDS.index(":"), LLADA_EOT, 0]])) == ["sort :"]


def test_dream_loads_with_its_real_code(dream, dream_dir):
    from safetensors.torch import load_file

    assert type(dream.model).__name__ == "DreamModel" and dream.backend == "dream"
    assert type(dream.tokenizer).__name__ == "DreamTokenizer"  # the folder's own (slow, remote) tokenizer
    assert dream.mask_id == DREAM_MASK and dream.eos_ids == (DREAM_EOS,) and dream.pad_id == DREAM_EOS
    state = dream.model.state_dict()
    for name, t in load_file(str(dream_dir / "model.safetensors")).items():
        assert torch.equal(state[name].cpu(), t), name
    # the 'default' RoPE entry we supply is plain RoPE: theta^(-2i/d) over the head dimension
    rotary = next(m for m in dream.model.modules() if type(m).__name__ == "DreamRotaryEmbedding")
    expected = 1.0 / 1000000.0 ** (torch.arange(0, 16, 2, dtype=torch.float) / 16)
    assert torch.allclose(rotary.inv_freq.cpu(), expected) and rotary.attention_scaling == 1.0
    text = dream.tokenizer.decode(dream.encode(["sort the a"])[0][0].tolist())
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nsort the a")
    assert text.endswith("<|im_start|>assistant\n")


def test_adapting_is_idempotent_and_leaves_the_library_alone(llada_dir, dream, llada):
    from transformers import AutoConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    from unmasker.dllm import adapt_remote_code

    cls = type(llada.model)
    init, tie = cls.__init__, cls.tie_weights
    assert adapt_remote_code(AutoConfig.from_pretrained(llada_dir, trust_remote_code=True), str(llada_dir)) is cls
    assert (cls.__init__, cls.tie_weights) == (init, tie)
    assert "default" not in ROPE_INIT_FUNCTIONS  # only Dream's module got its own copy with the entry
    assert "default" in sys.modules[type(dream.model).__module__].ROPE_INIT_FUNCTIONS


# -- LLaDA -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("gen_length, block_length, k, prompts", [
    (32, 8, 2, PROMPTS[:1]), (32, 32, 2, PROMPTS[1:]), (16, 8, 1, PROMPTS[1:])])
def test_top_k_confidence_equals_llada_generate(llada, fast_dllm, gen_length, block_length, k, prompts):
    """LLaDA's reference loop (low_confidence remasking, steps = gen_length / k) against ours."""
    for prompt in prompts:
        ids = _prompt_ids(llada, prompt)
        ref, ref_nfe = fast_dllm.generate(llada.model, ids, steps=gen_length // k, gen_length=gen_length,
                                          block_length=block_length, temperature=0.0, remasking="low_confidence",
                                          mask_id=LLADA_MASK)
        ours = _ours(llada, ("top_k_confidence", {"k": k}), [prompt], gen_length, block_length)
        assert ours.tokens[0].tolist() == ref[0, ids.shape[1]:].tolist()
        assert int(ours.nfe[0]) == ref_nfe == gen_length // k
        assert not (ours.tokens == LLADA_MASK).any()


def test_padded_llada_batch_equals_each_prompt_alone(llada, fast_dllm):
    """A left-padded batch (attention mask through LLaDA's own attention bias) gives every row the
    tokens the reference loop gives that prompt alone."""
    gen_length, block_length = 8, 4
    batch = _ours(llada, ("top_k_confidence", {"k": 1}), PROMPTS, gen_length, block_length)
    ids, att = llada.encode(PROMPTS)
    assert (att == 0).any()  # the batch really is padded
    for row, prompt in enumerate(PROMPTS):
        alone = _prompt_ids(llada, prompt)
        ref, _ = fast_dllm.generate(llada.model, alone, steps=gen_length, gen_length=gen_length,
                                    block_length=block_length, mask_id=LLADA_MASK)
        assert batch.tokens[row].tolist() == ref[0, alone.shape[1]:].tolist()


@pytest.mark.parametrize("threshold, block_length, gen_length", [(0.9, 8, 16), (0.9, 16, 16), (0.5, 8, 16)])
def test_confidence_threshold_equals_fast_dllm(llada, fast_dllm, threshold, block_length, gen_length):
    """Fast-dLLM's parallel decoding (`generate(..., threshold=)`): the top-1 of the block always,
    every other masked position of the block iff its confidence >= threshold; NFE adaptive."""
    parallel_steps = 0
    for prompt in PROMPTS:
        ids = _prompt_ids(llada, prompt)
        ref, ref_nfe = fast_dllm.generate(llada.model, ids, steps=gen_length // block_length, gen_length=gen_length,
                                          block_length=block_length, mask_id=LLADA_MASK, threshold=threshold)
        ours = _ours(llada, ("confidence_threshold", {"threshold": threshold}), [prompt], gen_length, block_length)
        assert ours.tokens[0].tolist() == ref[0, ids.shape[1]:].tolist()
        assert int(ours.nfe[0]) == ref_nfe
        parallel_steps += gen_length - ref_nfe
    assert parallel_steps > 0  # some steps really committed several tokens (the rule was exercised)


# Fast-dLLM's factor rule (`get_transfer_index_dynamic`, NVlabs/Fast-dLLM llada/generate.py, added
# 2025-07-06) postdates the snapshot in ../shared. Where that snapshot lacks it, the rule is
# restated here from its description (anchors 1.3), including how its loop picks the count.
def _fast_dllm_factor_rule(logits, temperature, remasking, mask_index, x, num_transfer_tokens, factor=1.0):
    """Sort the masked confidences c_(1) >= c_(2) >= ...; scan ranks r = 2, 3, ... and stop at the
    first with c_(r) < 1 - factor / (r + 1); commit the ranks before it (rank 1 always). The scan
    ends on index len - 1 both when the last rank fails and when every rank passes, and both
    cases commit all ranks."""
    x0 = logits.argmax(-1)
    p = torch.softmax(logits.to(torch.float64), dim=-1).gather(-1, x0[..., None]).squeeze(-1)
    x0 = torch.where(mask_index, x0, x)
    confidence = torch.where(mask_index, p, torch.full_like(p, float("-inf")))
    transfer = torch.zeros_like(mask_index)
    for j in range(confidence.shape[0]):
        n_masked = int(mask_index[j].sum())
        ranked = confidence[j].sort(descending=True)
        stop = n_masked - 1
        for r in range(1, n_masked):  # 0-based rank r is the (r + 1)-th most confident
            if ranked.values[r] < 1 - factor / (r + 2):
                stop = r
                break
        count = n_masked if stop == n_masked - 1 else stop
        transfer[j, ranked.indices[:count]] = True
    return x0, transfer


def _factor_rule(fast_dllm):
    return getattr(fast_dllm, "get_transfer_index_dynamic", None) or _fast_dllm_factor_rule


def _ctx(confidence, eligible):
    from unmasker.policies.base import StepContext

    B, L = confidence.shape
    z = torch.zeros(B, L)
    return StepContext(confidence=confidence, token_prob=confidence, margin=z, entropy=z, masked=eligible,
                       eligible=eligible, t=torch.zeros(B), block_step=torch.zeros(B, dtype=torch.long),
                       block_masked=eligible.sum(-1), block_length=L, gen_length=L)


def _rule_on_confidences(rule, confidence, eligible, factor):
    """Run a Fast-dLLM transfer rule on logits that give exactly `confidence` as p(argmax): token 0
    has probability c, the other 4095 share 1 - c (each below c for c >= 0.0005)."""
    c = confidence.double()
    logits = torch.log((1 - c) / 4095)[..., None].expand(*c.shape, 4096).clone()
    logits[..., 0] = torch.log(c)
    return rule(logits, 0.0, "low_confidence", eligible, torch.zeros(confidence.shape, dtype=torch.long),
                None, factor)[1]


def test_factor_rule_matches_fast_dllm_except_when_only_the_last_rank_fails(fast_dllm):
    from unmasker import build_policy

    rule, g = _factor_rule(fast_dllm), torch.Generator().manual_seed(0)
    differ = 0
    for trial in range(300):
        L = int(torch.randint(1, 9, (1,), generator=g))
        conf = torch.rand(1, L, generator=g) ** 0.3 * 0.999 + 0.0005
        eligible = torch.rand(1, L, generator=g) < 0.8
        eligible[0, int(torch.randint(0, L, (1,), generator=g))] = True
        factor = float(torch.rand(1, generator=g)) * 3 + 0.2
        theirs = _rule_on_confidences(rule, conf, eligible, factor)
        ours = build_policy("factor", factor=factor).select(_ctx(conf, eligible))
        ranked = conf[0][eligible[0]].sort(descending=True).values
        n = len(ranked)
        passes = [r == 0 or bool((r + 2) * (1 - ranked[r]) <= factor) for r in range(n)]
        only_last_fails = n >= 2 and all(passes[:-1]) and not passes[-1]
        if only_last_fails:  # pinned difference: Fast-dLLM also commits the failing last rank
            differ += 1
            assert theirs.sum() == n and ours.sum() == n - 1 and (ours <= theirs).all()
        else:
            assert torch.equal(ours, theirs), (conf, eligible, factor)
    assert differ > 0
    # the smallest case: two masked positions, the second far below the bound (3 * (1 - 0.3) > 1)
    conf, eligible = torch.tensor([[0.95, 0.3]]), torch.ones(1, 2, dtype=torch.bool)
    assert _rule_on_confidences(rule, conf, eligible, 1.0).tolist() == [[True, True]]
    assert build_policy("factor", factor=1.0).select(_ctx(conf, eligible)).tolist() == [[True, False]]


def _stated_factor_rule(factor):
    """The factor rule as stated, in Fast-dLLM's `get_transfer_index` signature: commit the top n
    masked positions for the largest n with (n + 1)(1 - c_(n)) <= factor, at least one."""
    def rule(logits, temperature, remasking, mask_index, x, num_transfer_tokens, threshold=None):
        x0 = logits.argmax(-1)
        p = torch.softmax(logits.to(torch.float64), dim=-1).gather(-1, x0[..., None]).squeeze(-1)
        x0 = torch.where(mask_index, x0, x)
        transfer = torch.zeros_like(mask_index)
        for j in range(x.shape[0]):
            ranked = torch.where(mask_index[j], p[j], torch.full_like(p[j], -1.0)).sort(descending=True)
            n_masked = int(mask_index[j].sum())
            ok = [r == 0 or (r + 2) * (1 - float(ranked.values[r])) <= factor for r in range(n_masked)]
            count = max(r + 1 for r in range(n_masked) if ok[r])
            transfer[j, ranked.indices[:count]] = True
        return x0, transfer

    return rule


def test_factor_decoding_follows_fast_dllm_loop(llada, fast_dllm, monkeypatch):
    """Fast-dLLM's own `generate` loop (blocks, float64 confidences, NFE count) with its transfer
    rule swapped for the factor rule as stated (f = 1, as in its scripts): equal to ours token for
    token. (Its code's one departure from the statement is pinned above.)"""
    monkeypatch.setattr(fast_dllm, "get_transfer_index", _stated_factor_rule(1.0))
    gen_length, block_length, parallel_steps = 24, 8, 0
    for prompt in PROMPTS:
        ids = _prompt_ids(llada, prompt)
        ref, ref_nfe = fast_dllm.generate(llada.model, ids, steps=gen_length, gen_length=gen_length,
                                          block_length=block_length, mask_id=LLADA_MASK)
        ours = _ours(llada, ("factor", {"factor": 1.0}), [prompt], gen_length, block_length)
        assert ours.tokens[0].tolist() == ref[0, ids.shape[1]:].tolist()
        assert int(ours.nfe[0]) == ref_nfe
        parallel_steps += gen_length - ref_nfe
    assert parallel_steps > 0  # some passes committed several tokens


# -- KV caches (Fast-dLLM's prefix and dual caches, issue 24) -----------------------------------------------
def _cached(fast_dllm, mode):
    return fast_dllm.generate_with_prefix_cache if mode == "prefix" else fast_dllm.generate_with_dual_cache


@pytest.mark.parametrize("mode", ["prefix", "dual"])
@pytest.mark.parametrize("gen_length, block_length", [(32, 8), (16, 16)])
def test_top_k_one_token_per_step_with_a_cache_equals_fast_dllm(llada, fast_dllm, mode, gen_length, block_length):
    """cache='prefix' / 'dual' in our loop against Fast-dLLM's generate_with_prefix_cache /
    generate_with_dual_cache, one token per step, token for token and pass for pass."""
    from unmasker import SamplerConfig, build_policy, generate

    for prompt in PROMPTS:
        ids = _prompt_ids(llada, prompt)
        ref, ref_nfe = _cached(fast_dllm, mode)(llada.model, ids, steps=gen_length, gen_length=gen_length,
                                                 block_length=block_length, temperature=0.0,
                                                 remasking="low_confidence", mask_id=LLADA_MASK)
        fed = []
        hook = llada.model.register_forward_pre_hook(lambda m, args, kw: fed.append(args[0].shape[1]), with_kwargs=True)
        try:
            ours = generate(llada, build_policy("top_k_confidence", k=1), [prompt],
                            SamplerConfig(gen_length, block_length, cache=mode))
        finally:
            hook.remove()
        assert ours.tokens[0].tolist() == ref[0, ids.shape[1]:].tolist()
        assert int(ours.nfe[0]) == ref_nfe == gen_length
        P = ids.shape[1]  # the block's first pass feeds the canvas, the others what the cache lacks
        expect = [P + gen_length if i % block_length == 0 else
                  (gen_length - (i // block_length) * block_length if mode == "prefix" else block_length)
                  for i in range(gen_length)]
        assert fed == expect


@pytest.mark.parametrize("mode", ["prefix", "dual"])
@pytest.mark.parametrize("threshold", [0.9, 0.5])
def test_threshold_decoding_with_a_cache_equals_fast_dllm(llada, fast_dllm, mode, threshold):
    """Fast-dLLM's cached loops with `threshold=`. Its loop checks for a finished block only after a
    pass, so a block its first pass finishes costs it one more (empty) pass: our NFE is its NFE
    minus those passes, never more."""
    from unmasker import SamplerConfig, build_policy, generate

    gen_length, block_length, parallel = 32, 8, 0
    for prompt in PROMPTS:
        ids = _prompt_ids(llada, prompt)
        ref, ref_nfe = _cached(fast_dllm, mode)(llada.model, ids, steps=gen_length // block_length,
                                                 gen_length=gen_length, block_length=block_length,
                                                 mask_id=LLADA_MASK, threshold=threshold)
        ours = generate(llada, build_policy("confidence_threshold", threshold=threshold), [prompt],
                        SamplerConfig(gen_length, block_length, cache=mode), keep_steps=True)
        assert ours.tokens[0].tolist() == ref[0, ids.shape[1]:].tolist()
        one_pass_blocks = sum(1 for b in range(gen_length // block_length)
                              if sum(int(s.active[0]) for s in ours.steps if s.block == b) == 1)
        assert int(ours.nfe[0]) == ref_nfe - one_pass_blocks
        parallel += gen_length - int(ours.nfe[0])
    assert parallel > 0  # some passes committed several tokens


@pytest.mark.parametrize("mode", ["prefix", "dual"])
def test_a_cached_batch_whose_rows_finish_apart_equals_each_prompt_alone(llada, mode):
    """Rows leave a block at different passes (threshold decoding): the cache drops their rows,
    and every row still gets exactly the tokens it gets alone."""
    from unmasker import SamplerConfig, build_policy, generate

    policy, cfg = build_policy("confidence_threshold", threshold=0.5), SamplerConfig(16, 8, cache=mode)
    batch = generate(llada, policy, PROMPTS, cfg, keep_steps=True)
    assert any(not bool(s.active.all()) for s in batch.steps)  # the rows really did finish apart
    for row, prompt in enumerate(PROMPTS):
        alone = generate(llada, policy, [prompt], cfg)
        assert batch.tokens[row].tolist() == alone.tokens[0].tolist()
        assert int(batch.nfe[row]) == int(alone.nfe[0])


@pytest.mark.parametrize("mode", ["prefix", "dual"])
@pytest.mark.parametrize("name", ["learned", "eb_sampler", "margin", "random"])
def test_every_policy_runs_with_a_cache(llada, mode, name):
    from unmasker import SamplerConfig, build_policy, generate

    traj = generate(llada, build_policy(name), PROMPTS, SamplerConfig(16, 8, cache=mode), keep_steps=True)
    assert not (traj.tokens == LLADA_MASK).any()
    assert all(s.confidence.shape == (2, 16) for s in traj.steps)


@pytest.mark.parametrize("mode", ["prefix", "dual"])
def test_outside_what_a_cached_pass_feeds_the_policy_sees_the_blocks_first_pass(llada, mode):
    """What docs/real-models.md says the learned policy sees with a cache: positions a pass does not feed
    keep the confidences of the block's first pass (which fed the whole canvas)."""
    from unmasker import SamplerConfig, build_policy, generate

    traj = generate(llada, build_policy("top_k_confidence"), PROMPTS[:1], SamplerConfig(24, 8, cache=mode),
                    keep_steps=True)
    for block in range(3):
        steps = [s for s in traj.steps if s.block == block]
        lo, hi = 8 * block, 8 * block + 8
        stale = torch.zeros(24, dtype=torch.bool)
        stale[:lo] = True
        if mode == "dual":
            stale[hi:] = True
        for s in steps[1:]:
            assert torch.equal(s.confidence[0, stale], steps[0].confidence[0, stale])
            assert not torch.equal(s.confidence[0, lo:hi], steps[0].confidence[0, lo:hi])  # the block is fresh


def test_stock_llada_code_without_a_cache_gets_a_clear_error(llada):
    """The hub's own LLaDA code takes no `replace_position`: the dual cache is refused up front."""
    import dataclasses

    from unmasker import DLLMError, SamplerConfig, build_policy, generate

    class Stock(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask=None, past_key_values=None, use_cache=False):
            assert past_key_values is None and not use_cache, "The kvcache is not suppotred for MDM."
            return self.inner(input_ids, attention_mask=attention_mask)

    stock = dataclasses.replace(llada, model=Stock(llada.model))
    with pytest.raises(DLLMError, match=r"cache='dual': the forward of .* takes no replace_position"):
        generate(stock, build_policy("top_k_confidence"), PROMPTS[:1], SamplerConfig(8, 8, cache="dual"))
    with pytest.raises(DLLMError, match=r"cache='prefix': the code of .* refuses a KV cache"):
        generate(stock, build_policy("top_k_confidence"), PROMPTS[:1], SamplerConfig(8, 8, cache="prefix"))


def test_we_never_propose_the_mask_token(fast_dllm):
    """LLaDA's loop takes the argmax over the whole vocabulary, mask token included; a committed
    mask would leave the position masked while counting it done (its loop then indexes past its
    schedule). Ours excludes the mask id from proposals (as dInfer does)."""
    from types import SimpleNamespace

    from unmasker import DLLM, build_policy, generate, SamplerConfig

    class MaskLoving(torch.nn.Module):  # logits: the mask id (3) first, then token 1
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, input_ids, **kwargs):
            out = torch.zeros(input_ids.shape + (5,))
            out[..., 3], out[..., 1] = 5.0, 2.0
            return SimpleNamespace(logits=out)

    logits = MaskLoving()(torch.zeros(1, 4, dtype=torch.long)).logits
    mask_index = torch.ones(1, 4, dtype=torch.bool)
    x0, transfer = fast_dllm.get_transfer_index(logits, 0.0, "low_confidence", mask_index,
                                                torch.full((1, 4), 3), torch.tensor([1]))
    assert (x0[transfer] == 3).all()  # the reference commits the mask token itself
    dllm = DLLM(model=MaskLoving(), tokenizer=SimpleNamespace(decode=lambda ids, **k: str(ids)), mask_id=3,
                eos_ids=(4,), pad_id=0, backend="llada")
    prompt = (torch.tensor([[2]]), torch.ones(1, 1, dtype=torch.long))
    traj = generate(dllm, build_policy("top_k_confidence", k=1), prompt, SamplerConfig(4, 4))
    assert traj.tokens.tolist() == [[1, 1, 1, 1]] and traj.nfe.tolist() == [4]


# -- Dream -------------------------------------------------------------------------------------------------
def _dream_reference(dream, ids, att, gen_length, steps, alg, eps, history=False):
    """Dream's own `diffusion_generate`, greedy (temperature 0, alg_temp 0): (generated ids, history)."""
    kwargs = {"attention_mask": att} if att is not None else {}
    # Passing the model's own DreamGenerationConfig skips `DreamGenerationConfig.from_model_config`,
    # which fails under transformers 5 (it compares Dream's fields with a plain GenerationConfig).
    out = dream.model.diffusion_generate(ids, generation_config=dream.model.generation_config,
                                         max_new_tokens=gen_length, steps=steps, alg=alg, alg_temp=0.0,
                                         temperature=0.0, eps=eps, output_history=history,
                                         return_dict_in_generate=True, mask_token_id=DREAM_MASK, **kwargs)
    return out.sequences[:, ids.shape[1]:], out.history


def _committed_per_step(history, prompt_len):
    done = [int((h[:, prompt_len:] != DREAM_MASK).sum(-1).max()) for h in history]
    return [b - a for a, b in zip([0] + done, done)]


# Dream's loop commits int(M (1 - s/t)) masked positions per step, t and s from
# linspace(1, eps, steps + 1), M the masked count. In exact arithmetic, steps = L / k gives k per
# step, LLaDA's schedule, which we use for every top-k rule; in float32 the truncation turns some
# of those k into k - 1 (a pass that commits less, made up at the end). A slightly negative eps
# keeps every product just above k, so both loops follow the same schedule and the ranking rules,
# the logit shift and the attention masks are compared token for token. Dream's default eps is
# pinned separately below.
ALIGNED_EPS = -1e-3


@pytest.mark.parametrize("alg, policy, k, prompts", [
    ("maskgit_plus", "top_k_confidence", 1, PROMPTS[:1]), ("maskgit_plus", "top_k_confidence", 2, PROMPTS[1:]),
    ("entropy", "entropy", 1, PROMPTS[1:]), ("entropy", "entropy", 2, PROMPTS[:1])])
def test_full_diffusion_equals_dream_diffusion_generate(dream, capsys, alg, policy, k, prompts):
    gen_length = 16
    for prompt in prompts:
        ids = _prompt_ids(dream, prompt)
        ref, history = _dream_reference(dream, ids, None, gen_length, gen_length // k, alg, ALIGNED_EPS, history=True)
        assert _committed_per_step(history, ids.shape[1]) == [k] * (gen_length // k)  # the schedules agree
        ours = _ours(dream, (policy, {"k": k}), [prompt], gen_length, gen_length)
        assert ours.tokens[0].tolist() == ref[0].tolist()
        assert int(ours.nfe[0]) == gen_length // k
    capsys.readouterr()  # Dream's loop prints its step count and time


def test_padded_dream_batch_equals_diffusion_generate(dream, capsys):
    """Left padding: Dream's own 4-D attention mask and position ids give the same tokens in both loops."""
    gen_length = 8
    ids, att = dream.encode(PROMPTS)
    assert (att == 0).any()  # the batch really is padded
    ref, _ = _dream_reference(dream, ids.to(dream.device), att.to(dream.device), gen_length, gen_length,
                              "maskgit_plus", ALIGNED_EPS)
    ours = _ours(dream, ("top_k_confidence", {"k": 1}), PROMPTS, gen_length, gen_length)
    assert ours.tokens.tolist() == ref.tolist()
    capsys.readouterr()


def test_dream_default_eps_spends_its_first_pass_committing_nothing(dream, capsys):
    """Pinned difference. With its default eps = 1e-3 and steps = L, Dream's first step commits
    int(L (1 - s/t)) = int(1 - eps) = 0 tokens: a forward pass that changes nothing, made up by a
    last step that commits 2 at once. Our schedule commits k in every pass it spends."""
    gen_length = 16
    ids = _prompt_ids(dream, PROMPTS[0])
    _, history = _dream_reference(dream, ids, None, gen_length, gen_length, "maskgit_plus", 1e-3, history=True)
    assert _committed_per_step(history, ids.shape[1]) == [0] + [1] * (gen_length - 2) + [2]
    ours = _ours(dream, ("top_k_confidence", {"k": 1}), [PROMPTS[0]], gen_length, gen_length)
    assert sorted(ours.unmask_step[0].tolist()) == list(range(gen_length))  # one per pass
    capsys.readouterr()


# -- the command line and the app on a real-code folder ----------------------------------------------------
def _env():
    # TORCHDYNAMO_DISABLE: see `_eager`
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
            "PYTHONUNBUFFERED": "1", "TORCHDYNAMO_DISABLE": "1"}


def test_cli_generates_with_a_llada_folder(llada_dir, llada):
    prompt = "sort : 15 3 9 1"
    out = subprocess.run(
        [sys.executable, "-m", "unmasker", "generate", "--model", str(llada_dir), "--gen-length", "16",
         "--block-length", "8", "--policy", "confidence_threshold", "--param", "threshold=0.9", "--device", DEVICE,
         "--json", prompt],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    ours = _ours(llada, ("confidence_threshold", {"threshold": 0.9}), [prompt], 16, 8)
    assert result["text"] == ours.texts[0] and result["nfe"] == int(ours.nfe[0])
    committed = sorted(p for s in result["steps"] for p in s["positions"])
    assert committed == list(range(16)) and result["still_masked"] == 0


@contextlib.contextmanager
def _app(model_dir, log_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "app.py", "--model", str(model_dir), "--port", str(port),
                                 "--device", DEVICE], cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=_env())
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"app exited with {proc.returncode}:\n{Path(log_path).read_text()}")
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if time.time() > deadline:
                    pytest.fail(f"app did not answer on {url}:\n{Path(log_path).read_text()}")
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_app_serves_a_llada_folder(llada_dir, llada, tmp_path):
    from gradio_client import Client

    prompt, spec = "sort : 15 3 9 1", {"policy": "top_k_confidence", "params": {"k": 2}}
    with _app(llada_dir, tmp_path / "app.log") as url:
        assert "loaded LLaDA-8B-Instruct" in (tmp_path / "app.log").read_text()
        job = Client(url, verbose=False).submit(prompt, 16, 8, 0, 0.0, [spec], api_name="/run")
        col = job.result(timeout=120)[0][0]
    ours = _ours(llada, ("top_k_confidence", {"k": 2}), [prompt], 16, 8)
    assert col["done"] and col["token_ids"] == ours.tokens[0].tolist() and col["nfe"] == int(ours.nfe[0]) == 8
