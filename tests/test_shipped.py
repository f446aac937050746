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
