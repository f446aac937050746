"""Access to a masked diffusion LM: token canvas in, per-position logits out.

`DLLM` owns the model, its tokenizer and the special ids (mask / EOS / pad) and hides the
differences between backends:

* ``masked_lm``: any Hugging Face masked LM (`AutoModelForMaskedLM`), e.g. our embedded tiny dLLM.
* ``llada``: LLaDA (`AutoModel`, remote code); position i is predicted at position i.
* ``dream``: Dream (`AutoModel`, remote code); Qwen-initialised, so position i is predicted from
  the hidden state at i-1 and the logits are shifted right by one (anchors 1.2).

LLaDA's and Dream's remote code was written for transformers 4.x; `adapt_remote_code` lets it load
under 5.x without touching the model folder. It knows nothing about blocks, schedules or policies.
Nothing is loaded at import time.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from typing import Sequence

import torch

# Known mask ids of public dLLMs (paper 1.2). Used only to cross-check the tokenizer.
KNOWN_MASK_IDS = {"llada": 126336, "dream": 151666}
BACKENDS = ("masked_lm", "llada", "dream")


class DLLMError(ValueError):
    """A model, tokenizer or prompt that the sampler cannot use."""


@dataclass
class DLLM:
    """A frozen masked dLLM with its tokenizer and special ids.

    `logits(input_ids, attention_mask)` returns (B, T, V) logits aligned so that ``[:, i]`` is the
    distribution of the token at position i, whatever the backend.
    """

    model: torch.nn.Module
    tokenizer: object
    mask_id: int
    eos_ids: tuple[int, ...]
    pad_id: int
    backend: str = "masked_lm"
    use_chat_template: bool = False
    max_positions: int | None = None
    name: str = "model"
    generation_prefix: str = ""  # text the response starts with, after the chat template (paper: "<reasoning>")

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise DLLMError(f"backend={self.backend!r}: expected one of {BACKENDS}")
        if self.mask_id is None or self.mask_id < 0:
            raise DLLMError(f"mask_id={self.mask_id!r}: the tokenizer defines no mask token")
        if self.pad_id == self.mask_id:
            # Left padding with the mask id would make padded prompt slots look like canvas.
            raise DLLMError(f"pad_id == mask_id == {self.mask_id}: padding must differ from the mask")
        if not self.eos_ids:
            raise DLLMError("the tokenizer defines no EOS token")

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # -- tokens ----------------------------------------------------------------------------
    def encode(self, prompts: Sequence[str], max_prompt_tokens: int | None = None):
        """Tokenise prompts, left-padded. Returns (input_ids, attention_mask), both (B, P) long."""
        if isinstance(prompts, str):
            prompts = [prompts]
        if len(prompts) == 0:
            raise DLLMError("no prompt given")
        rows, prefix = [], self._prefix_ids()
        for i, text in enumerate(prompts):
            if not isinstance(text, str) or not text.strip():
                raise DLLMError(f"prompt {i} is empty")
            if self.use_chat_template:
                ids = self.tokenizer.apply_chat_template(
                    [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True
                )
                if isinstance(ids, dict) or hasattr(ids, "keys"):
                    ids = ids["input_ids"]
            else:
                ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            ids = list(ids) + prefix
            if not ids:
                raise DLLMError(f"prompt {i} tokenises to nothing")
            if self.mask_id in ids:
                raise DLLMError(f"prompt {i} contains the mask token (id {self.mask_id})")
            if max_prompt_tokens is not None and len(ids) > max_prompt_tokens:
                raise DLLMError(
                    f"prompt {i} has {len(ids)} tokens; at most {max_prompt_tokens} fit with this generation length"
                )
            rows.append(ids)
        return left_pad(rows, self.pad_id)

    def _prefix_ids(self) -> list[int]:
        if not self.generation_prefix:
            return []
        ids = list(self.tokenizer(self.generation_prefix, add_special_tokens=False)["input_ids"])
        if not ids:
            raise DLLMError(f"generation_prefix={self.generation_prefix!r} tokenises to nothing")
        return ids

    def with_prefix(self, generation_prefix: str) -> "DLLM":
        """The same model (shared weights) with another generation prefix."""
        if generation_prefix == self.generation_prefix:
            return self
        return replace(self, generation_prefix=generation_prefix)

    def decode(self, gen_ids: torch.Tensor) -> list[str]:
        """Decode (B, L) generated ids: cut at the first EOS, drop masks and special tokens."""
        out = []
        eos = set(self.eos_ids)
        for row in gen_ids.tolist():
            kept = []
            for tok in row:
                if tok in eos:
                    break
                if tok != self.mask_id:
                    kept.append(tok)
            out.append(self.tokenizer.decode(kept, skip_special_tokens=True).strip())
        return out

    def token_strings(self, ids: Sequence[int]) -> list[str]:
        """One display string per token id (for visualisation)."""
        return [self.tokenizer.convert_ids_to_tokens(int(i)) or "" for i in ids]

    def unknown_words(self, text: str) -> list[str]:
        """The words of `text` the tokenizer maps to its unknown token, in order, without repeats.
        Empty for tokenizers with no unknown token (byte-level BPE reads everything)."""
        unk = getattr(self.tokenizer, "unk_token_id", None)
        if unk is None or not text:
            return []
        try:
            enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            spans = [text[a:b] for i, (a, b) in zip(enc["input_ids"], enc["offset_mapping"]) if i == unk]
        except (NotImplementedError, TypeError, ValueError):  # a slow tokenizer: no offsets
            spans = [w for w in text.split() if unk in self.tokenizer(w, add_special_tokens=False)["input_ids"]]
        return list(dict.fromkeys(spans))

    def max_prompt_tokens(self, gen_length: int) -> int | None:
        return None if self.max_positions is None else self.max_positions - gen_length

    # -- logits ----------------------------------------------------------------------------
    @torch.no_grad()
    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T) ids + (B, T) 0/1 mask -> (B, T, V) logits, position-aligned."""
        if self.backend == "dream":
            out = self.model(input_ids, **_dream_kwargs(attention_mask)).logits
            # Dream predicts token i from position i-1 (anchors 1.2): shift right by one.
            return torch.cat([out[:, :1], out[:, :-1]], dim=1)
        if self.backend == "llada":
            return self.model(input_ids, attention_mask=attention_mask).logits
        # Position ids from the attention mask make left padding invisible to absolute-position
        # encoders: a batched prompt sees the same positions as the prompt alone.
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        return self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).logits


def _dream_kwargs(attention_mask: torch.Tensor) -> dict:
    if bool(attention_mask.all()):
        return {"attention_mask": "full"}
    am = attention_mask.bool()
    full = am[:, None, None, :] & am[:, None, :, None]  # (B, 1, T, T), as Dream's own generate()
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    return {"attention_mask": full, "position_ids": position_ids}


def left_pad(rows: Sequence[Sequence[int]], pad_id: int):
    """Left-pad id lists. Returns (ids, attention_mask), both (B, P) long."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    att = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
            att[i, width - len(r):] = 1
    return ids, att


def load_masked_dllm(
    name_or_path: str,
    backend: str,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    mask_id: int | None = None,
    chat: bool | None = None,
    generation_prefix: str = "",
) -> DLLM:
    """Load a masked dLLM of a known `backend` (one of BACKENDS) from a local folder or hub id.
    `unmasker.load_dllm` (unmasker/loading.py) detects the backend and calls this.

    `mask_id`, when given, must agree with the tokenizer's mask token; a mismatch is an error,
    never a silent override (a wrong mask id makes every canvas position look unmasked).
    `chat=None` applies the tokenizer's chat template when it has one. `generation_prefix` is
    appended to every encoded prompt, after the template (the paper starts LLaDA's answers with
    the literal "<reasoning>").
    """
    from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, AutoTokenizer

    if backend not in BACKENDS:
        raise DLLMError(f"backend={backend!r}: expected 'auto' or one of {BACKENDS}")
    # Remote code runs only for the two model families that need it (LLaDA, Dream), never for
    # an arbitrary folder or hub id.
    trust = backend in ("llada", "dream")
    try:
        config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust)
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust)
    except (OSError, ValueError) as err:
        raise DLLMError(f"cannot load a model from {name_or_path!r}: {err}") from err

    tok_mask = tokenizer.mask_token_id
    if tok_mask is None:
        tok_mask = KNOWN_MASK_IDS.get(backend)
    if mask_id is not None and tok_mask is not None and mask_id != tok_mask:
        raise DLLMError(f"mask_id={mask_id} disagrees with the tokenizer's mask token id {tok_mask}")
    mask = mask_id if mask_id is not None else tok_mask
    if mask is None:
        raise DLLMError(f"{name_or_path}: the tokenizer has no mask token; pass mask_id explicitly")
    if backend in KNOWN_MASK_IDS and mask != KNOWN_MASK_IDS[backend]:
        raise DLLMError(f"{backend} uses mask id {KNOWN_MASK_IDS[backend]}, the tokenizer says {mask}")

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        if backend == "masked_lm":
            model = AutoModelForMaskedLM.from_pretrained(name_or_path, dtype=dtype)
        else:
            adapt_remote_code(config, name_or_path)
            model = AutoModel.from_pretrained(name_or_path, config=config, trust_remote_code=True, dtype=dtype)
    except (OSError, ValueError, RuntimeError) as err:
        raise DLLMError(f"cannot load model weights from {name_or_path!r}: {err}") from err
    model.to(device).eval().requires_grad_(False)

    vocab = model.get_output_embeddings().weight.shape[0] if model.get_output_embeddings() is not None else None
    if vocab is not None and mask >= vocab:
        raise DLLMError(f"mask id {mask} is outside the model's vocabulary of {vocab}")
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    eot = tokenizer.convert_tokens_to_ids("<|eot_id|>") if backend == "llada" else None
    if isinstance(eot, int) and eot != tokenizer.unk_token_id and eot not in eos:
        eos.append(eot)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos[0] if eos else 0)
    if chat is None:
        chat = getattr(tokenizer, "chat_template", None) is not None
    max_pos = getattr(config, "max_position_embeddings", None)
    return DLLM(
        model=model, tokenizer=tokenizer, mask_id=int(mask), eos_ids=tuple(int(e) for e in eos),
        pad_id=int(pad), backend=backend, use_chat_template=bool(chat), max_positions=max_pos,
        name=_model_name(name_or_path), generation_prefix=generation_prefix,
    )


# -- remote code written for transformers 4.x ----------------------------------------------------------
# LLaDA's and Dream's hub folders ship model code written against transformers 4.x. Under 5.x
# six things in it break, none of them in the maths of the model:
#   * LLaDAModelLM.__init__ never calls `post_init()`, which in 5.x is what sets
#     `all_tied_weights_keys` (AttributeError in `from_pretrained`; ML-GSAI/LLaDA#130);
#   * LLaDAModelLM overrides `tie_weights(self)`, which 5.x calls with keyword arguments;
#   * LLaDA's forward reads `config.use_cache`, which 5.x's config base class now drops as a
#     generation parameter;
#   * Dream's rotary embedding looks up `ROPE_INIT_FUNCTIONS["default"]`, an entry 5.x dropped;
#   * 5.x builds the model on the meta device and leaves non-persistent buffers (RoPE's
#     `inv_freq`) to `_init_weights`; Dream's own `_init_weights` does not know them, so they would
#     hold uninitialised memory: a model that loads and runs, with wrong positions;
#   * DreamGenerationConfig overrides `validate(self, is_init=False)`, which 5.x calls with
#     `user_set_attributes=`.
# `adapt_remote_code` fills exactly these gaps on the loaded config and on the classes
# transformers imported from the folder (never in the user's files). It does nothing under 4.x
# or for code that already fits.


def _transformers_5() -> bool:
    import inspect

    from transformers import PreTrainedModel

    return "recompute_mapping" in inspect.signature(PreTrainedModel.tie_weights).parameters


def _default_rope_parameters(config, device=None, seq_len=None, **rope_kwargs):
    """transformers 4.x `_compute_default_rope_parameters`: plain RoPE inverse frequencies
    theta^(-2i / d) over the rotary dims, attention factor 1 (Su et al., RoFormer)."""
    if rope_kwargs.get("base") is not None and rope_kwargs.get("dim") is not None:
        base, dim = rope_kwargs["base"], int(rope_kwargs["dim"])
    else:
        base = getattr(config, "rope_theta", None)
        if base is None:
            base = config.rope_parameters["rope_theta"]
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        dim = int(head_dim * getattr(config, "partial_rotary_factor", 1.0))
    exponent = torch.arange(0, dim, 2, dtype=torch.int64).to(device=device, dtype=torch.float) / dim
    return 1.0 / (base ** exponent), 1.0


def _drop_new_keywords(cls: type, name: str, base: type) -> None:
    """If `cls` overrides `base.name` with an older signature, let it ignore keyword arguments
    that only the newer `base` signature has (the override keeps doing what it did under 4.x)."""
    import functools
    import inspect

    own = cls.__dict__.get(name)
    if own is None:
        return
    params = inspect.signature(own).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    if set(inspect.signature(getattr(base, name)).parameters) <= set(params):
        return

    @functools.wraps(own)
    def accepting(self, *args, **kwargs):
        return own(self, *args, **{k: v for k, v in kwargs.items() if k in params})

    setattr(cls, name, accepting)


def _refill_rotary(module: torch.nn.Module) -> None:
    """Recompute a 4.x Llama-family rotary embedding's `inv_freq` (it has `rope_init_fn`), as its
    `__init__` did; 5.x's own `_init_weights` does the same for 5.x rotary modules."""
    inv_freq = getattr(module, "inv_freq", None)
    if not callable(getattr(module, "rope_init_fn", None)) or not isinstance(inv_freq, torch.Tensor):
        return
    fresh, module.attention_scaling = module.rope_init_fn(module.config, inv_freq.device,
                                                          **getattr(module, "rope_kwargs", {}))
    with torch.no_grad():
        inv_freq.copy_(fresh)
    module.original_inv_freq = inv_freq


def adapt_remote_code(config, name_or_path: str) -> type | None:
    """Let a LLaDA / Dream remote model class written for transformers 4.x load under 5.x.

    Resolves the class `AutoModel` will use (from the config's `auto_map`) and, only where it is
    missing, adds: a `post_init()` call after `__init__`; 5.x keyword arguments accepted by the
    class's own `tie_weights` and by its module's `GenerationConfig` subclasses' `validate`; the
    'default' RoPE entry in the module's `ROPE_INIT_FUNCTIONS`; RoPE buffers recomputed by the
    class's own `_init_weights`; and `config.use_cache` (False: diffusion sampling keeps no KV
    cache). Pass the same `config` to `from_pretrained`.
    Idempotent. Returns the class (None under transformers 4.x or without `auto_map`).
    """
    import functools
    import sys

    ref = (getattr(config, "auto_map", None) or {}).get("AutoModel")
    if not ref or not _transformers_5():
        return None
    from transformers import GenerationConfig, PreTrainedModel
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    if not hasattr(config, "use_cache"):
        config.use_cache = False
    cls = get_class_from_dynamic_module(ref, name_or_path)
    if cls.__dict__.get("_unmasker_adapted"):
        return cls
    for owner in cls.__mro__:
        if owner is PreTrainedModel:
            break
        _drop_new_keywords(owner, "tie_weights", PreTrainedModel)
    init = cls.__init__

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        if not hasattr(self, "all_tied_weights_keys"):  # the 4.x code never called post_init()
            self.post_init()

    cls.__init__ = __init__
    owner = next((c for c in cls.__mro__[: cls.__mro__.index(PreTrainedModel)] if "_init_weights" in c.__dict__), None)
    if owner is not None:
        own_init_weights = owner.__dict__["_init_weights"]

        @functools.wraps(own_init_weights)
        def _init_weights(self, module):
            own_init_weights(self, module)
            _refill_rotary(module)

        owner._init_weights = _init_weights
    module = sys.modules.get(cls.__module__)
    for obj in list(vars(module).values()) if module else ():
        if isinstance(obj, type) and issubclass(obj, GenerationConfig) and obj is not GenerationConfig:
            _drop_new_keywords(obj, "validate", GenerationConfig)
    rope = getattr(module, "ROPE_INIT_FUNCTIONS", None)
    if isinstance(rope, dict) and "default" not in rope:
        # a copy for this module only: the library's own table stays as 5.x ships it
        module.ROPE_INIT_FUNCTIONS = {**rope, "default": _default_rope_parameters}
    cls._unmasker_adapted = True
    return cls


def _model_name(name_or_path: str) -> str:
    card = os.path.join(name_or_path, "card.json")
    if os.path.exists(card):
        try:
            with open(card) as f:
                return json.load(f).get("name", os.path.basename(os.path.normpath(name_or_path)))
        except (OSError, json.JSONDecodeError):
            pass
    return os.path.basename(os.path.normpath(name_or_path)) or name_or_path
