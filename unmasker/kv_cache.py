"""The sampler's forward pass, with or without a KV cache (Fast-dLLM, arXiv 2505.22618).

`make_forward(dllm, mode, prompt_len)` returns a callable the loop calls once per pass with the
rows that still have work and the current block; it answers logits over a *window* of the
generation region (the rest of the canvas was not recomputed):

* ``none``: the whole canvas every pass; the window is the whole generation region.
* ``prefix``: the first pass of a block runs the whole canvas and keeps the keys/values of
  everything before the block; later passes feed the block and everything after it.
* ``dual``: the first pass of a block runs the whole canvas and keeps every key/value; later
  passes feed only the block, whose keys/values replace their slots (`replace_position`).

Caches need model code that takes `past_key_values` (and, for dual, `replace_position`):
Fast-dLLM's LLaDA code does. Anything else gets a `DLLMError` naming the model and what it lacks.
Knows nothing about policies or features.
"""

from __future__ import annotations

import inspect

import torch

from .dllm import DLLM, DLLMError

CACHE_MODES = ("none", "prefix", "dual")


def cache_support(dllm: DLLM, mode: str) -> str | None:
    """Why `dllm` cannot run with cache `mode`, or None when it can."""
    if mode == "none":
        return None
    what = f"{dllm.name} ({dllm.backend}, {type(dllm.model).__name__})"
    if dllm.backend != "llada":
        return (f"cache={mode!r} needs LLaDA model code that takes past_key_values (Fast-dLLM's modeling_llada.py); "
                f"{what} is not a LLaDA model (see docs/real-models.md, 'At real-model scale')")
    params = inspect.signature(dllm.model.forward).parameters
    needed = ["past_key_values", "use_cache"] + (["replace_position"] if mode == "dual" else [])
    missing = [p for p in needed if p not in params]
    if missing:
        return (f"cache={mode!r}: the forward of {what} takes no {', '.join(missing)}; use Fast-dLLM's "
                "modeling_llada.py, which adds KV-cache support")
    return None


class Forward:
    """One forward pass per call: `(x, attn, rows, lo, hi, first) -> (logits, start, end)`.

    x, attn: (B, T) canvas and attention mask, T = P + L; rows: (n,) long, the batch rows to run;
    [lo, hi): the current block in generation coordinates; first: whether this is the block's
    first pass. Returns logits (n, end - start, V) for generation positions [start, end)."""

    def __init__(self, dllm: DLLM, mode: str, prompt_len: int, gen_length: int):
        self.dllm, self.mode, self.P, self.L = dllm, mode, prompt_len, gen_length
        self.cache, self.rows = None, None

    def __call__(self, x, attn, rows, lo, hi, first):
        sub = rows.numel() != x.shape[0]
        xs, att = (x[rows], attn[rows]) if sub else (x, attn)
        P = self.P
        if self.mode == "none":
            return self.dllm.logits(xs, att)[:, P:], 0, self.L
        if first:  # the whole canvas; keep what the later passes of this block reuse
            logits, past = self._model(xs, att)
            if self.mode == "prefix":  # a copy of the prefix, so the rest of the first pass's keys are freed
                self.cache = [tuple(t[:, :, :P + lo].clone() for t in layer) for layer in past]
            else:
                self.cache = [tuple(layer) for layer in past]
            self.rows = rows
            return logits[:, P:], 0, self.L
        self._keep(rows)
        if self.mode == "prefix":
            logits, _ = self._model(xs[:, P + lo:], att, past=self.cache)
            return logits, lo, self.L
        replace = torch.zeros((1, x.shape[1]), dtype=torch.bool, device=x.device)  # (1, T): one index list
        replace[:, P + lo:P + hi] = True
        logits, _ = self._model(xs[:, P + lo:P + hi], att, past=self.cache, replace=replace)
        return logits, lo, hi

    def _keep(self, rows):
        """Rows only ever leave within a block: shrink the cache once when they do."""
        if rows.numel() == self.rows.numel():
            return
        idx = torch.searchsorted(self.rows, rows)
        self.cache = [tuple(t[idx] for t in layer) for layer in self.cache]
        self.rows = rows

    def _model(self, ids, att, past=None, replace=None):
        kwargs = {"use_cache": True, "past_key_values": past}
        if replace is not None:
            kwargs["replace_position"] = replace
        if not bool(att.all()):  # the full canvas's mask (past + fed), as the model expects
            kwargs["attention_mask"] = att
        try:
            out = self.dllm.model(ids, **kwargs)
        except AssertionError as err:  # stock LLaDA code asserts that it has no KV cache
            raise DLLMError(f"cache={self.mode!r}: the code of {self.dllm.name} refuses a KV cache ({err}); use "
                            "Fast-dLLM's modeling_llada.py") from err
        if out.past_key_values is None:
            raise DLLMError(f"cache={self.mode!r}: {self.dllm.name} returned no past_key_values")
        return out.logits, out.past_key_values


def make_forward(dllm: DLLM, mode: str, prompt_len: int, gen_length: int) -> Forward:
    """The forward pass for cache `mode`; a `DLLMError` if the model cannot run it."""
    reason = cache_support(dllm, mode)
    if reason:
        raise DLLMError(reason)
    return Forward(dllm, mode, prompt_len, gen_length)
