"""Sampling at real-model scale (issue 24), with stand-in models: the end-of-text early stop,
out-of-memory as a message (page, CLI, GRPO), clear errors for caches a model cannot run, and a
GRPO update that is identical with lean and with full features."""

import copy
import dataclasses
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from unmasker import DLLM, DLLMError, SamplerConfig, build_policy, generate
from unmasker.policies.learned import LearnedPolicy

V, MASK, EOS, PAD, WORD, AFTER = 10, 9, 1, 0, 7, 6


class Scripted(nn.Module):
    """Logits by script: the row whose prompt starts with `eos_at`'s key proposes WORD, then EOS at
    gen position eos_at[key], then AFTER; confidence falls left to right (top-k goes in order),
    except positions in `boost`. Counts the rows of every call; raises OOM when `oom` is set."""

    def __init__(self, prompt_len, eos_at, boost=()):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.P, self.eos_at, self.boost = prompt_len, eos_at, set(boost)
        self.calls, self.oom = [], False

    def forward(self, input_ids, attention_mask=None, position_ids=None):
        if self.oom:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        B, T = input_ids.shape
        self.calls.append(input_ids[:, 0].tolist())
        logits = torch.zeros(B, T, V)
        for b in range(B):
            e = self.eos_at.get(int(input_ids[b, 0]), T)
            for j in range(T - self.P):
                tok = WORD if j < e else EOS if j == e else AFTER
                logits[b, self.P + j, tok] = 20.0 if j in self.boost else 10.0 - 0.1 * j
        return SimpleNamespace(logits=logits)


def scripted_dllm(eos_at, boost=(), prompt_len=2):
    tok = SimpleNamespace(decode=lambda ids, skip_special_tokens=True: " ".join(map(str, ids)))
    return DLLM(model=Scripted(prompt_len, eos_at, boost), tokenizer=tok, mask_id=MASK, eos_ids=(EOS,), pad_id=PAD)


def prompts(*keys):
    ids = torch.tensor([[k, 4] for k in keys])
    return ids, torch.ones_like(ids)


# -- end-of-text early stop (Learn2PD EoTP) ---------------------------------------------------------------
def test_eos_early_stop_fills_the_rest_and_spends_no_more_passes():
    dllm = scripted_dllm({3: 2})  # row 0: EOS at gen position 2; row 1 (key 5): no EOS
    cfg = SamplerConfig(gen_length=12, block_length=4)
    off = generate(dllm, build_policy("top_k_confidence"), prompts(3, 5), cfg, keep_steps=True)
    dllm.model.calls.clear()
    on = generate(dllm, build_policy("top_k_confidence"), prompts(3, 5),
                  dataclasses.replace(cfg, eos_early_stop=True), keep_steps=True)
    assert off.nfe.tolist() == [12, 12]
    assert on.nfe.tolist() == [3, 12]
    assert on.tokens[0].tolist() == [WORD, WORD] + [EOS] * 10
    assert off.tokens[0].tolist() == [WORD, WORD, EOS] + [AFTER] * 9
    assert on.tokens[1].tolist() == off.tokens[1].tolist()  # the other row is untouched
    assert on.texts == off.texts  # decoding cuts at the first EOS anyway
    assert sum(3 in c for c in dllm.model.calls) == 3  # row 0 never ran again
    assert on.unmask_step[0].tolist() == [0, 1, 2] + [2] * 9  # filled at the step that settled it
    assert on.steps[2].filled[0].sum() == 9 and not on.steps[2].filled[1].any()


def test_eos_early_stop_waits_until_everything_before_the_eos_is_committed():
    dllm = scripted_dllm({3: 3}, boost={3})  # EOS at position 3 is the most confident: committed first
    traj = generate(dllm, build_policy("top_k_confidence"), prompts(3), SamplerConfig(6, 6, eos_early_stop=True),
                    keep_steps=True)
    assert traj.steps[0].committed[0].nonzero().flatten().tolist() == [3]
    assert [int(s.filled.sum()) for s in traj.steps] == [0, 0, 0, 2]  # only once 0..2 are committed
    assert traj.nfe.tolist() == [4] and traj.tokens[0].tolist() == [WORD] * 3 + [EOS] * 3


def test_new_config_fields_are_validated():
    for kw, msg in (({"cache": "full"}, "cache='full'"), ({"eos_early_stop": 1}, "eos_early_stop=1"),
                    ({"record_features": "yes"}, "record_features='yes'")):
        with pytest.raises(ValueError, match=msg):
            SamplerConfig(**kw)


# -- KV caches: clear errors where the model cannot run them ----------------------------------------------
@pytest.mark.parametrize("mode", ["prefix", "dual"])
def test_a_model_without_cache_support_gets_an_error_naming_it(tiny_dllm, mode):
    with pytest.raises(DLLMError, match=rf"cache='{mode}'.*{tiny_dllm.name} \(masked_lm, BertForMaskedLM\)"):
        generate(tiny_dllm, build_policy("top_k_confidence"), ["sort : 3 1"], SamplerConfig(8, 4, cache=mode))


# -- out of memory is a message ---------------------------------------------------------------------------
def test_the_page_turns_out_of_memory_into_a_message_and_keeps_serving(tiny_dllm, monkeypatch):
    from page import compare

    boom = {"on": False}
    real = type(tiny_dllm).logits

    def logits(self, ids, att):
        if boom["on"]:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(self, ids, att)

    monkeypatch.setattr(type(tiny_dllm), "logits", logits)
    res = compare.Resources(dllm=tiny_dllm, policies={}, policies_dir="", tasks={}, examples=[], model_card={})
    spec = [{"policy": "top_k_confidence", "params": {"k": 1}}, {"policy": "confidence_threshold", "params": {}}]
    boom["on"] = True
    with pytest.raises(compare.OutOfMemory, match=r"ran out of memory.*generation length 16.*shorter generation length "
                                              r"or fewer strategy columns \(this run had 2\)"):
        list(compare.run_columns(res, "sort : 3 1", 16, 8, 0, 0.0, spec))
    boom["on"] = False  # the next visitor's run works
    records = list(compare.run_columns(res, "sort : 3 1", 16, 8, 0, 0.0, spec))[-1]
    assert all(r["done"] for r in records)


def test_the_cli_names_the_setting_to_lower(tiny_model_dir, tiny_dllm, monkeypatch, capsys):
    import unmasker.loading
    from unmasker import cli

    standin = dataclasses.replace(tiny_dllm, model=copy.deepcopy(tiny_dllm.model))
    standin.model.forward = lambda **kw: (_ for _ in ()).throw(torch.OutOfMemoryError("CUDA out of memory"))
    monkeypatch.setattr(unmasker.loading, "load_dllm", lambda *a, **k: standin)
    code = cli.main(["generate", "--model", tiny_model_dir, "--gen-length", "16", "--block-length", "4", "sort : 3 1"])
    err = capsys.readouterr().err
    assert code == cli.EXIT_FAILURE
    assert "out of memory at --gen-length 16: lower --gen-length" in err and "Traceback" not in err


def test_cli_exposes_the_new_sampler_fields(tiny_model_dir, capsys):
    import json

    from unmasker import cli

    assert cli.main(["generate", "--model", tiny_model_dir, "--gen-length", "8", "--block-length", "4",
                     "--eos-early-stop", "--record-features", "--json", "sort : 3 1"]) == 0
    config = json.loads(capsys.readouterr().out)["config"]
    assert config["eos_early_stop"] is True and config["record_features"] is True and config["cache"] == "none"


def test_a_grpo_rollout_out_of_memory_names_the_trainer_flags():
    from training import grpo

    dllm = scripted_dllm({})
    dllm.model.oom = True
    with pytest.raises(torch.OutOfMemoryError, match=r"rollout of 2 sequences x gen_length 8: lower --prompts_per_step "
                                                     r"or --group_size"):
        grpo.rollout(dllm, LearnedPolicy(fallback=False), prompts(3, 5), SamplerConfig(8, 4), seed=0)


# -- GRPO with lean features ------------------------------------------------------------------------------
def test_a_grpo_update_is_identical_with_lean_and_full_features(tiny_dllm):
    """The learned policy reads only the confidence: computing margin and entropy too
    (record_features) changes nothing in the rollouts, the log-likelihoods or the update."""
    from training import grpo

    texts = ["sort : 15 3 9", "sort : 4 1", "Mia has 12 apples . She buys 3 more . How many apples does Mia have now ?"]
    cfg = SamplerConfig(gen_length=12, block_length=4)
    results = []
    for record in (False, True):
        net = LearnedPolicy(seed=5).net.train()
        policy = LearnedPolicy(net=net, temperature=10.0, fallback=False)  # near-uniform: varied NFE
        batch = grpo.rollout(tiny_dllm, policy, texts * 2, dataclasses.replace(cfg, record_features=record), seed=11)
        reward = grpo.multiplicative_reward(torch.ones(6), batch.nfe, 12, 1.0)
        adv = grpo.group_advantages(reward, 2)
        opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
        logp, _ = grpo.sequence_log_probs(net, batch, 10.0)
        loss = grpo.clipped_surrogate_loss(logp, logp.detach(), adv, batch.active, 0.5)
        loss.backward()
        opt.step()
        results.append((batch, loss.detach(), [p.detach().clone() for p in net.parameters()]))
    (a, la, pa), (b, lb, pb) = results
    for name in ("confidence", "masked", "t", "eligible", "actions", "tokens", "nfe"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert torch.equal(la, lb) and la != 0
    assert all(torch.equal(x, y) for x, y in zip(pa, pb))
