import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random BertForMaskedLM + the embedded tokenizer, saved to a folder."""
    from training.tiny import build_tiny_model

    return build_tiny_model(str(tmp_path_factory.mktemp("tiny-model")))


@pytest.fixture(scope="session")
def tiny_dllm(tiny_model_dir):
    from unmasker import load_dllm

    return load_dllm(tiny_model_dir, device="cpu")
