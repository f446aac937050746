"""Build a tiny, randomly initialised masked LM with the embedded tokenizer: the stand-in model
for tests and smoke runs (seconds to build, never trained)."""

from __future__ import annotations

import torch


def build_tiny_model(folder: str, hidden_size: int = 32, num_layers: int = 1, seed: int = 0) -> str:
    from transformers import BertConfig, BertForMaskedLM

    from .tokenizer import build_tokenizer

    tok = build_tokenizer(samples_per_task=300)
    torch.manual_seed(seed)
    model = BertForMaskedLM(BertConfig(
        vocab_size=len(tok), hidden_size=hidden_size, num_hidden_layers=num_layers, num_attention_heads=2,
        intermediate_size=2 * hidden_size, max_position_embeddings=256, type_vocab_size=1,
        pad_token_id=tok.pad_token_id,
    ))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
