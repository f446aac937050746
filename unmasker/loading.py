"""Which kind of model a folder or hub id holds, and loading it: the one module that knows both
model kinds, so that neither kind's module imports the other.

* masked dLLMs (the embedded tiny dLLM, LLaDA, Dream, any masked LM): `unmasker.dllm`;
* DiffusionGemma, which is not a masked dLLM (uniform-noise canvases, no mask id): `unmasker.gemma`.

The kind is read from config.json as plain JSON, so no model code runs to decide it.
Nothing is loaded at import time.
"""

from __future__ import annotations

import json
import os

import torch

from .dllm import DLLMError, load_masked_dllm


def raw_config(name_or_path: str) -> dict:
    """config.json as plain JSON (no code executed), from a folder or the hub cache/hub."""
    path = os.path.join(name_or_path, "config.json")
    if not os.path.isfile(path):
        try:
            from huggingface_hub import hf_hub_download

            path = hf_hub_download(name_or_path, "config.json")
        except Exception as err:  # noqa: BLE001 - offline, unknown repo, bad id: one clear message
            raise DLLMError(f"cannot find a model config for {name_or_path!r}: {err}") from err
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise DLLMError(f"{path}: unreadable config.json: {err}") from err


def detect_backend(config) -> str:
    """'llada' / 'dream' / 'masked_lm' / 'diffusion_gemma' from a config (object or plain dict)."""
    kind = config.get("model_type", "") if isinstance(config, dict) else getattr(config, "model_type", "")
    kind = (kind or "").lower()
    if kind == "diffusion_gemma":
        return "diffusion_gemma"
    if "llada" in kind:
        return "llada"
    if "dream" in kind:
        return "dream"
    return "masked_lm"


def model_kind(name_or_path: str) -> str:
    """The backend `load_dllm` would pick for a folder or hub id (raises DLLMError without a config)."""
    return detect_backend(raw_config(name_or_path))


def load_dllm(
    name_or_path: str,
    backend: str = "auto",
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    mask_id: int | None = None,
    chat: bool | None = None,
    generation_prefix: str = "",
):
    """Load a dLLM from a local folder or hub id: a `DLLM` (unmasker/dllm.py) for a masked dLLM,
    a `GemmaDLLM` (unmasker/gemma.py) for DiffusionGemma. `backend="auto"` reads it from config.json.

    `mask_id`, when given, must agree with the tokenizer's mask token (an error otherwise).
    `chat=None` applies the tokenizer's chat template when it has one. `generation_prefix` is
    appended to every encoded prompt, after the template (masked dLLMs only).
    """
    if os.path.isdir(name_or_path) and not os.path.exists(os.path.join(name_or_path, "config.json")):
        raise DLLMError(f"{name_or_path}: no config.json; not a model folder")
    if backend == "auto":
        backend = model_kind(name_or_path)
    if backend == "diffusion_gemma":  # uniform noise, no mask id: its own backend
        if mask_id is not None or generation_prefix:
            raise DLLMError("DiffusionGemma has no mask token and takes no generation prefix")
        from .gemma import load_gemma

        return load_gemma(name_or_path, device=device, dtype=dtype, chat=chat)
    return load_masked_dllm(name_or_path, backend, device=device, dtype=dtype, mask_id=mask_id, chat=chat,
                            generation_prefix=generation_prefix)

