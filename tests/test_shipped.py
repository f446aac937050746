"""The shipped checkpoints hang together: every embedded dLLM folder's card names the folder, and
every shipped policy names a dLLM folder that is shipped (the app prefers a policy whose card names
the loaded model, so a stale name would claim a policy was trained on a model it never saw)."""

import json
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CKPT = os.path.join(REPO, "checkpoints")
MODELS = sorted(d for d in os.listdir(CKPT) if d.startswith("tiny-dllm")) if os.path.isdir(CKPT) else []
POLICIES = os.path.join(CKPT, "policies")


def _card(folder):
    with open(os.path.join(folder, "card.json")) as f:
        return json.load(f)


@pytest.mark.parametrize("name", MODELS)
def test_model_card_names_its_folder(name):
    card = _card(os.path.join(CKPT, name))
    assert card["name"] == name
    assert card["config"]["output_dir"].rstrip("/").endswith(name)
    assert os.path.getsize(os.path.join(CKPT, name, "model.safetensors")) < 40 * 2**20


@pytest.mark.skipif(not os.path.isdir(POLICIES), reason="no shipped policies")
def test_every_policy_names_a_shipped_model():
    for name in sorted(os.listdir(POLICIES)):
        folder = os.path.join(POLICIES, name)
        if not os.path.isfile(os.path.join(folder, "card.json")):
            continue
        card = _card(folder)
        model = card["model"].rstrip("/")
        assert model == card["config"]["model"].rstrip("/"), name
        assert os.path.isdir(os.path.join(REPO, model)), f"{name}: trained on {model}, which is not shipped"
        assert _card(os.path.join(REPO, model))["name"] == os.path.basename(model), name


# Written by hand (no task file has them): each pair differs by one word the default model's
# vocabulary lacks, in a place that changes nothing.
UNKNOWN_WORD_PAIRS = [
    ("Tom has 5 apples. He buys 3 more apples. How many apples does Tom have now?",
     "Tom has 5 apples. He buys 3 more apples at the bazaar. How many apples does Tom have now?", 8),
    ("Anna has 12 pencils. She gives 4 pencils to Ben. How many pencils does Anna have left?",
     "Anna has 12 pencils. She gives 4 pencils to Ben on a glorious morning. How many pencils does Anna have left?", 8),
    ("There are 4 boxes with 6 cookies in each box. How many cookies are there?",
     "There are 4 boxes with 6 delicious cookies in each box. How many cookies are there?", 24),
    ("Maria had 9 stickers. She lost 2 stickers. How many stickers does Maria have now?",
     "Maria had 9 stickers. She lost 2 stickers at the carnival. How many stickers does Maria have now?", 7),
    ("Sam has 7 cats and 5 dogs. How many animals does Sam have?",
     "Sam has 7 fluffy cats and 5 dogs. How many animals does Sam have?", 12),
]


@pytest.mark.skipif(not os.path.isdir(os.path.join(CKPT, "tiny-dllm")), reason="shipped checkpoints/tiny-dllm absent")
def test_default_model_answers_the_same_with_an_unknown_word_in_a_detail():
    from training.tasks import get_task
    from unmasker import SamplerConfig, build_policy, generate, load_dllm

    dllm = load_dllm(os.path.join(CKPT, "tiny-dllm"), device="cpu")
    unk = dllm.tokenizer.unk_token_id
    prompts = [p for plain, odd, _ in UNKNOWN_WORD_PAIRS for p in (plain, odd)]
    unknown = [dllm.tokenizer(p)["input_ids"].count(unk) for p in prompts]
    assert unknown == [0, 1] * len(UNKNOWN_WORD_PAIRS)   # the odd word really is unknown, nothing else
    texts = generate(dllm, build_policy("top_k_confidence", k=1), prompts, SamplerConfig(48, 8)).texts
    task = get_task("everyday")
    got = [(task.extract(texts[2 * i]), task.extract(texts[2 * i + 1])) for i in range(len(UNKNOWN_WORD_PAIRS))]
    assert got == [(str(a), str(a)) for *_, a in UNKNOWN_WORD_PAIRS], texts
