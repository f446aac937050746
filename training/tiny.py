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


def build_tiny_diffusion_gemma(folder: str, canvas_length: int = 8, num_layers: int = 2, seed: int = 0) -> str:
    """A ~175K-parameter random `DiffusionGemmaForBlockDiffusion` with the embedded tokenizer (plus
    the three image special tokens its config needs), for tests and the app on CPU. Its vision
    tower is tiny too: transformers always builds one (a default one has 167M parameters)."""
    from transformers import DiffusionGemmaConfig, DiffusionGemmaForBlockDiffusion

    from .tokenizer import build_tokenizer

    tok = build_tokenizer(samples_per_task=300)
    tok.add_special_tokens({"additional_special_tokens": ["<image>", "<boi>", "<eoi>"]})
    image, boi, eoi = tok.convert_tokens_to_ids(["<image>", "<boi>", "<eoi>"])
    text = dict(vocab_size=len(tok), hidden_size=16, intermediate_size=16, num_hidden_layers=num_layers,
                num_attention_heads=2, num_key_value_heads=1, head_dim=8, global_head_dim=8,
                num_global_key_value_heads=1, max_position_embeddings=256, sliding_window=8,
                layer_types=["sliding_attention"] * (num_layers - 1) + ["full_attention"],  # last must be full
                num_experts=2, top_k_experts=1, moe_intermediate_size=4,
                pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=tok.pad_token_id)
    vision = dict(model_type="gemma4_vision", hidden_size=8, intermediate_size=8, num_hidden_layers=1,
                  num_attention_heads=1, num_key_value_heads=1, head_dim=8, patch_size=2)
    config = DiffusionGemmaConfig(text_config=text, vision_config=vision, image_token_id=image, boi_token_id=boi,
                                  eoi_token_id=eoi, canvas_length=canvas_length)
    torch.manual_seed(seed)
    model = DiffusionGemmaForBlockDiffusion(config)
    # A model built from a config has no EOS in its generation config (generate would ignore EOS).
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
