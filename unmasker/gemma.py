"""DiffusionGemma (transformers' `DiffusionGemmaForBlockDiffusion`) as a `load_dllm` backend whose
denoising steps can be watched, with its acceptance rule exchangeable.

DiffusionGemma is not a masked dLLM, so it does not fit `DLLM` / `iter_unmask`: its canvas starts
as uniform random tokens (no mask id), every step samples all positions, an *acceptance* rule
chooses which samples are fed back as the next input and the rest are *renoised* to fresh random
tokens. Nothing is sticky (an accepted position can be renoised next step), the output of a
canvas is the argmax of its last step (not the accepted canvas), and an adaptive stop ends a
canvas early. Canvases follow each other autoregressively. (transformers 5.24,
generation_diffusion_gemma.py: `_denoising_step` l.1001-1074, argmax output l.793, stop l.485-541.)

So this module runs the model's own `generate` unchanged and only plugs in at its sampler hook
(`_prepare_sampler`, l.1221): a `RecordingSampler` that delegates to the stock entropy-bound
sampler or applies one of our acceptance rules, and records every step as a `GemmaStep`. Two more
hooks only observe: the adaptive stop's answer (`_prepare_diffusion_stopping_criteria`) and the
end-of-sequence state after each canvas (`_finalize_canvas`), so decoder passes per row are
counted exactly as `generate` counts them. The hooks are set on the instance for one call, under
a lock. `disable_compile=True` always: the compiled static-cache path keeps the first sampler it
saw (l.1246-1254), so a second rule would silently run the first one.

It knows nothing about masks, blocks or our unmasking policies (a learned acceptance policy is
out of scope). Importing it loads nothing.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol, Sequence

import torch

_HOOK_LOCK = threading.Lock()  # the hooks live on the model instance: one recorded call at a time


# -- acceptance rules ------------------------------------------------------------------------------
@dataclass(frozen=True)
class AcceptContext:
    """What an acceptance rule sees in one step. B = batch, C = canvas length.

    confidence / entropy: (B, C) float, top-1 probability and entropy (nats) of the processed
        (temperature-scaled) distribution, as the stock sampler sees it.
    accepted_before: (B, C) bool, accepted at any earlier step of this canvas (sticky rules keep them).
    step: steps already taken in this canvas (0 at its first step). max_steps: the step budget N.
    """

    confidence: torch.Tensor
    entropy: torch.Tensor
    accepted_before: torch.Tensor
    step: int
    max_steps: int


class AcceptanceRule(Protocol):
    """One verb: `accept(ctx) -> (B, C) bool`, the positions whose fresh sample is fed back."""

    sticky: bool

    def accept(self, ctx: AcceptContext) -> torch.Tensor: ...


def _check_sticky(sticky):
    if not isinstance(sticky, bool):
        raise ValueError(f"sticky={sticky!r}: must be True or False")


def _top_n(score: torch.Tensor, allowed: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """The n (per row, (B,)) highest-scoring allowed positions; ties by position."""
    s = torch.where(allowed, score, torch.full_like(score, -math.inf))
    rank = torch.argsort(torch.argsort(s, dim=-1, descending=True, stable=True), dim=-1)
    return allowed & (rank < n[:, None])


@dataclass(frozen=True)
class EntropyBound:
    """DiffusionGemma's own rule, run by transformers' `EntropyBoundSampler` (Ben-Hamu et al.,
    arXiv 2505.24857): sort positions by entropy and accept the longest prefix whose entropy sum
    minus its largest entropy is <= entropy_bound. Not sticky."""

    entropy_bound: float = field(default=0.1, metadata={"help": "entropy bound gamma > 0 (nats); model default 0.1"})
    sticky: bool = field(default=False, init=False, metadata={"help": "(always False: the stock sampler)"})

    def __post_init__(self):
        if isinstance(self.entropy_bound, bool) or not isinstance(self.entropy_bound, (int, float)) or not (
                self.entropy_bound > 0 and math.isfinite(self.entropy_bound)):
            raise ValueError(f"entropy_bound={self.entropy_bound!r}: must be a finite number > 0")


@dataclass(frozen=True)
class TopKAcceptance:
    """Top-k confidence: after step s (1-based), s * k positions are accepted. Sticky keeps the
    earlier ones and adds the k most confident of the rest (BlockRefinement-like); not sticky
    takes the s * k most confident anew each step."""

    k: int = field(default=1, metadata={"help": "positions added per step"})
    sticky: bool = field(default=False, metadata={"help": "keep accepted tokens (never renoise them)"})

    def __post_init__(self):
        if not isinstance(self.k, int) or isinstance(self.k, bool) or self.k < 1:
            raise ValueError(f"k={self.k!r}: must be an integer >= 1")
        _check_sticky(self.sticky)

    def accept(self, ctx: AcceptContext) -> torch.Tensor:
        B = ctx.confidence.shape[0]
        if self.sticky:
            n = torch.full((B,), self.k, dtype=torch.long, device=ctx.confidence.device)
            return ctx.accepted_before | _top_n(ctx.confidence, ~ctx.accepted_before, n)
        n = torch.full((B,), (ctx.step + 1) * self.k, dtype=torch.long, device=ctx.confidence.device)
        return _top_n(ctx.confidence, torch.ones_like(ctx.accepted_before), n)


@dataclass(frozen=True)
class ThresholdAcceptance:
    """Confidence threshold (Fast-dLLM style): accept every position with confidence >= threshold,
    and at least the most confident one. Sticky also keeps everything accepted before."""

    threshold: float = field(default=0.9, metadata={"help": "confidence threshold in (0, 1]"})
    sticky: bool = field(default=False, metadata={"help": "keep accepted tokens (never renoise them)"})

    def __post_init__(self):
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)) or not (
                0.0 < self.threshold <= 1.0):
            raise ValueError(f"threshold={self.threshold!r}: must be in (0, 1]")
        _check_sticky(self.sticky)

    def accept(self, ctx: AcceptContext) -> torch.Tensor:
        allowed = ~ctx.accepted_before if self.sticky else torch.ones_like(ctx.accepted_before)
        one = torch.ones(ctx.confidence.shape[0], dtype=torch.long, device=ctx.confidence.device)
        new = allowed & ((ctx.confidence >= self.threshold) | _top_n(ctx.confidence, allowed, one))
        return ctx.accepted_before | new if self.sticky else new


ACCEPTANCE: dict[str, type] = {
    "entropy_bound": EntropyBound,
    "top_k": TopKAcceptance,
    "threshold": ThresholdAcceptance,
}


def build_acceptance(name: str, **params):
    """A registered acceptance rule; its constructor validates the parameters."""
    if name not in ACCEPTANCE:
        raise ValueError(f"unknown acceptance rule {name!r}; registered: {sorted(ACCEPTANCE)}")
    cls = ACCEPTANCE[name]
    names = {f for f in cls.__dataclass_fields__ if cls.__dataclass_fields__[f].init}
    unknown = set(params) - names
    if unknown:
        raise ValueError(f"acceptance rule {name!r} has no parameter(s) {sorted(unknown)}; it takes {sorted(names)}")
    return cls(**params)


# -- sampling settings ---------------------------------------------------------------------------
@dataclass(frozen=True)
class GemmaSampling:
    """`generate`'s diffusion settings (defaults: transformers 5.24, G:227-235). max_new_tokens is
    rounded up to whole canvases by `generate`. adaptive_stop=False runs every canvas for all
    max_denoising_steps (stability_threshold / confidence_threshold then unused)."""

    max_new_tokens: int = field(default=256, metadata={"help": "new tokens (whole canvases)"})
    max_denoising_steps: int = field(default=48, metadata={"help": "step budget N per canvas"})
    t_min: float = field(default=0.4, metadata={"help": "temperature schedule end (approached at step N)"})
    t_max: float = field(default=0.8, metadata={"help": "temperature at the first step"})
    adaptive_stop: bool = field(default=True, metadata={"help": "stop a canvas when stable and confident"})
    stability_threshold: int = field(default=1, metadata={"help": "steps the argmax must stay unchanged"})
    confidence_threshold: float = field(default=0.005, metadata={"help": "mean entropy (nats) below which to stop"})

    def __post_init__(self):
        for name in ("max_new_tokens", "max_denoising_steps"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}={v!r}: must be an integer >= 1")
        for name in ("t_min", "t_max", "confidence_threshold"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"{name}={v!r}: must be a finite number")
        if not (0 <= self.t_min < self.t_max):
            raise ValueError(f"t_min={self.t_min!r}, t_max={self.t_max!r}: need 0 <= t_min < t_max")
        if not isinstance(self.stability_threshold, int) or isinstance(self.stability_threshold, bool) \
                or self.stability_threshold < 0:
            raise ValueError(f"stability_threshold={self.stability_threshold!r}: must be an integer >= 0")
        if not self.confidence_threshold > 0:
            raise ValueError(f"confidence_threshold={self.confidence_threshold!r}: must be > 0")
        if not isinstance(self.adaptive_stop, bool):
            raise ValueError(f"adaptive_stop={self.adaptive_stop!r}: must be True or False")

    def generate_kwargs(self) -> dict:
        # transformers' own validate() wants a float confidence_threshold (an int raises a
        # misleading AttributeError there), hence the float().
        stop = ({"stability_threshold": self.stability_threshold,
                 "confidence_threshold": float(self.confidence_threshold)} if self.adaptive_stop
                else {"stability_threshold": None, "confidence_threshold": None})
        return {"max_new_tokens": self.max_new_tokens, "max_denoising_steps": self.max_denoising_steps,
                "t_min": float(self.t_min), "t_max": float(self.t_max), **stop}


# -- records ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GemmaStep:
    """One denoising step (one decoder pass) of a batch. B = batch, C = canvas length.

    canvas: canvas index (0-based); step: step within the canvas (0-based); remaining: the
        model's `cur_step` (N..1, steps left including this one).
    input: (B, C) long, the canvas the decoder read. sampled: (B, C), one sample per position.
    argmax: (B, C), the draft; a canvas's output is the argmax of its last step.
    accepted: (B, C) bool, positions whose sample is fed back; renoised = ~accepted.
    next_input: (B, C), the canvas after renoising (the next step's input).
    changed: (B, C) bool, argmax differs from the previous step's (all True at a canvas's first step).
    confidence / entropy: (B, C) float of the processed distribution.
    active: (B,) bool, the step cost the row a decoder pass (it had not stopped).
    stopped: (B,) bool, the adaptive stop ended the row's canvas at this step.
    passes: (B,) long, decoder passes of the row so far, as `generate` counts them.
    """

    canvas: int
    step: int
    remaining: int
    input: torch.Tensor
    sampled: torch.Tensor
    argmax: torch.Tensor
    accepted: torch.Tensor
    next_input: torch.Tensor
    changed: torch.Tensor
    confidence: torch.Tensor
    entropy: torch.Tensor
    active: torch.Tensor
    stopped: torch.Tensor
    passes: torch.Tensor

    @property
    def renoised(self) -> torch.Tensor:
        return ~self.accepted


@dataclass
class GemmaRun:
    """A finished `generate` call: new tokens (B, n_canvases * C) with pad after EOS as `generate`
    writes it, decoded texts, every step, decoder passes per row (B,) and `generate`'s own
    tokens_per_forward (B,)."""

    prompt_ids: torch.Tensor
    tokens: torch.Tensor
    texts: list[str]
    steps: list[GemmaStep]
    passes: torch.Tensor
    tokens_per_forward: torch.Tensor
    canvas_length: int
    elapsed: float


class RecordingSampler:
    """A DiffusionGemma sampler (duck-typed: `initialize_canvas`, `accept_canvas`,
    `renoise_canvas`, as `generate` calls them at G:984, G:1048, G:1050) that records each step.
    With `inner` (transformers' `EntropyBoundSampler`) it delegates every decision, so a run is
    bit-identical to the stock one; otherwise `rule` accepts and the rest is renoised uniformly,
    from the same global RNG stream the stock sampler draws from."""

    def __init__(self, rule, canvas_length: int, vocab_size: int, max_steps: int, inner=None):
        self.rule, self.inner = rule, inner
        self.canvas_length, self.vocab_size, self.max_steps = canvas_length, vocab_size, max_steps
        self.steps: list[GemmaStep] = []
        self.canvas = -1
        self._pending: dict | None = None
        self._passes = self._finished_seq = None

    # generate's three calls --------------------------------------------------------------------
    def initialize_canvas(self, batch_size: int, device: torch.device) -> torch.LongTensor:
        self._flush()
        self.canvas += 1
        self._step = 0
        self._accepted = torch.zeros((batch_size, self.canvas_length), dtype=torch.bool, device=device)
        self._argmax = None
        self._stopped = torch.zeros(batch_size, dtype=torch.bool, device=device)
        if self._passes is None:
            self._passes = torch.zeros(batch_size, dtype=torch.long, device=device)
            self._finished_seq = torch.zeros(batch_size, dtype=torch.bool, device=device)
        if self.inner is not None:
            return self.inner.initialize_canvas(batch_size, device)
        return torch.randint(0, self.vocab_size, (batch_size, self.canvas_length), device=device)

    def accept_canvas(self, current_canvas, denoiser_canvas, logits, cur_step):
        self._flush()
        probs = torch.softmax(logits.float(), dim=-1)
        confidence = probs.max(-1).values
        entropy = -(probs * torch.log(probs.clamp(min=1e-30))).sum(-1)
        if self.inner is not None:
            accepted_canvas = self.inner.accept_canvas(current_canvas, denoiser_canvas, logits, cur_step)
            accepted = self.inner.accepted_token_mask.clone()
        else:
            ctx = AcceptContext(confidence, entropy, self._accepted, self._step, self.max_steps)
            accepted = self.rule.accept(ctx)
            if not isinstance(accepted, torch.Tensor) or accepted.dtype != torch.bool \
                    or accepted.shape != confidence.shape:
                raise TypeError(f"{type(self.rule).__name__}.accept must return a bool tensor of shape "
                                f"{tuple(confidence.shape)}")
            # a sticky rule keeps what it accepted before: only newly accepted positions take the sample
            fresh = accepted & ~self._accepted if self.rule.sticky else accepted
            accepted_canvas = torch.where(fresh, denoiser_canvas, current_canvas)
        argmax = logits.argmax(-1)  # what generate computes as new_argmax_canvas (G:1045)
        changed = torch.ones_like(accepted) if self._argmax is None else argmax != self._argmax
        active = ~(self._stopped | self._finished_seq)
        self._passes = self._passes + active.long()
        self._pending = dict(canvas=self.canvas, step=self._step, remaining=int(cur_step),
                             input=current_canvas.clone(), sampled=denoiser_canvas.clone(), argmax=argmax,
                             accepted=accepted, changed=changed, confidence=confidence, entropy=entropy,
                             active=active, passes=self._passes.clone())
        # rows that stopped keep their argmax (generate freezes them, G:1054-1061)
        self._argmax = argmax if self._argmax is None else torch.where(self._stopped[:, None], self._argmax, argmax)
        self._accepted = self._accepted | accepted if self.rule.sticky else accepted
        self._step += 1
        return accepted_canvas

    def renoise_canvas(self, accepted_canvas, cur_step):
        if self.inner is not None:
            out = self.inner.renoise_canvas(accepted_canvas, cur_step)
        else:
            noise = torch.randint(0, self.vocab_size, accepted_canvas.shape, device=accepted_canvas.device)
            out = torch.where(self._pending["accepted"], accepted_canvas, noise)
        self._pending["next_input"] = out.clone()
        return out

    # observations from the other two hooks ------------------------------------------------------
    def note_stop(self, stop: torch.Tensor) -> None:
        """The adaptive stop's answer for the step just taken (generate ORs it in, G:1063)."""
        if self._pending is not None:
            self._pending["stopped"] = stop & ~self._stopped
        self._stopped = self._stopped | stop

    def note_finished_sequences(self, finished: torch.Tensor) -> None:
        """Rows that hit EOS / max length after a canvas; they cost no passes afterwards (G:761)."""
        self._flush()
        self._finished_seq = finished.clone()

    def _flush(self) -> None:
        if self._pending is None:
            return
        p = self._pending
        p.setdefault("stopped", torch.zeros_like(p["active"]))
        p.setdefault("next_input", p["input"])
        self.steps.append(GemmaStep(**p))
        self._pending = None

    def finish(self) -> list[GemmaStep]:
        self._flush()
        return self.steps


class _RecordingStop:
    """Wraps generate's adaptive stop to report its answer to the recorder; decides nothing."""

    def __init__(self, inner, recorder: RecordingSampler):
        self.inner, self.recorder = inner, recorder

    def __call__(self, argmax_canvas, logits, **kwargs):
        stop = self.inner(argmax_canvas, logits, **kwargs)
        self.recorder.note_stop(stop)
        return stop

    def reset(self):
        self.inner.reset()


# -- the backend -----------------------------------------------------------------------------------
@dataclass
class GemmaDLLM:
    """A loaded DiffusionGemma with its tokenizer. `generate` runs the model's own sampling loop
    with an acceptance rule and returns every step (`GemmaRun`)."""

    model: torch.nn.Module
    tokenizer: object
    eos_ids: tuple[int, ...]
    pad_id: int | None
    use_chat_template: bool = False
    name: str = "model"
    backend: str = "diffusion_gemma"

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def canvas_length(self) -> int:
        return int(self.model.config.canvas_length)

    @property
    def vocab_size(self) -> int:
        return int(self.model.config.text_config.vocab_size)

    def encode(self, prompts: Sequence[str]):
        """Tokenise prompts, left-padded. Returns (input_ids, attention_mask), both (B, P) long."""
        from .dllm import DLLMError, left_pad

        if isinstance(prompts, str):
            prompts = [prompts]
        if len(prompts) == 0:
            raise DLLMError("no prompt given")
        rows = []
        for i, text in enumerate(prompts):
            if not isinstance(text, str) or not text.strip():
                raise DLLMError(f"prompt {i} is empty")
            if self.use_chat_template:
                ids = self.tokenizer.apply_chat_template([{"role": "user", "content": text}],
                                                         add_generation_prompt=True, tokenize=True)
                if hasattr(ids, "keys"):
                    ids = ids["input_ids"]
            else:
                ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            if not ids:
                raise DLLMError(f"prompt {i} tokenises to nothing")
            rows.append(list(ids))
        return left_pad(rows, self.pad_id if self.pad_id is not None else 0)

    def decode(self, tokens: torch.Tensor) -> list[str]:
        """(B, T) new tokens -> texts, cut at the first EOS, special tokens dropped."""
        eos, out = set(self.eos_ids), []
        for row in tokens.tolist():
            kept = []
            for tok in row:
                if tok in eos:
                    break
                kept.append(tok)
            out.append(self.tokenizer.decode(kept, skip_special_tokens=True).strip())
        return out

    def token_strings(self, ids: Sequence[int]) -> list[str]:
        return [self.tokenizer.convert_ids_to_tokens(int(i)) or "" for i in ids]

    def unknown_words(self, text: str) -> list[str]:
        """The words of `text` the tokenizer reads as its unknown token (as `DLLM.unknown_words`)."""
        from .dllm import DLLM

        return DLLM.unknown_words(self, text)

    def generate(self, prompts, rule, sampling: GemmaSampling = GemmaSampling(), seed: int = 0) -> GemmaRun:
        """Run `model.generate` once with `rule` as the acceptance step and record every step.

        `prompts`: strings, or pre-tokenised (input_ids, attention_mask). The run draws from the
        global torch RNG (as `generate` does), seeded with `seed` inside a forked RNG state.
        """
        from transformers.models.diffusion_gemma.generation_diffusion_gemma import (
            EntropyBoundSampler, EntropyBoundSamplerConfig)

        if isinstance(prompts, tuple) and len(prompts) == 2 and isinstance(prompts[0], torch.Tensor):
            ids, att = prompts
        else:
            ids, att = self.encode(prompts)
        ids, att = ids.to(self.device), att.to(self.device)
        model = self.model
        inner = None
        kwargs = sampling.generate_kwargs()
        if isinstance(rule, EntropyBound):
            inner = EntropyBoundSampler(EntropyBoundSamplerConfig(entropy_bound=float(rule.entropy_bound)),
                                        canvas_length=self.canvas_length, vocab_size=self.vocab_size,
                                        max_denoising_steps=sampling.max_denoising_steps)
            kwargs["sampler_config"] = EntropyBoundSamplerConfig(entropy_bound=float(rule.entropy_bound))
        elif not callable(getattr(rule, "accept", None)):
            raise TypeError(f"{type(rule).__name__} is not an acceptance rule (needs accept(ctx))")
        recorder = RecordingSampler(rule, self.canvas_length, self.vocab_size, sampling.max_denoising_steps, inner)
        own_stop, own_finalize = model._prepare_diffusion_stopping_criteria, model._finalize_canvas

        def stopping(generation_config):
            stop = own_stop(generation_config)
            return None if stop is None else _RecordingStop(stop, recorder)

        def finalize(**kw):
            input_ids, finished = own_finalize(**kw)
            recorder.note_finished_sequences(finished)
            return input_ids, finished

        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        start = time.perf_counter()
        with _HOOK_LOCK, torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            model._prepare_sampler = lambda generation_config: recorder
            model._prepare_diffusion_stopping_criteria = stopping
            model._finalize_canvas = finalize
            try:
                out = model.generate(ids, attention_mask=att, disable_compile=True, return_dict_in_generate=True,
                                     eos_token_id=list(self.eos_ids) or None, pad_token_id=self.pad_id, **kwargs)
            finally:
                for hook in ("_prepare_sampler", "_prepare_diffusion_stopping_criteria", "_finalize_canvas"):
                    model.__dict__.pop(hook, None)
        steps = recorder.finish()
        tokens = out.sequences[:, ids.shape[1]:].cpu()
        return GemmaRun(prompt_ids=ids.cpu(), tokens=tokens, texts=self.decode(tokens), steps=steps,
                        passes=recorder._passes.cpu(), tokens_per_forward=out.tokens_per_forward.cpu(),
                        canvas_length=self.canvas_length, elapsed=time.perf_counter() - start)


def load_gemma(name_or_path: str, device: str | torch.device | None = None, dtype: torch.dtype | None = None,
               chat: bool | None = None) -> GemmaDLLM:
    """Load a DiffusionGemma folder or hub id (`unmasker.load_dllm` sends such configs here)."""
    from .dllm import DLLMError, _model_name

    try:
        from transformers import AutoTokenizer, DiffusionGemmaForBlockDiffusion
    except ImportError as err:
        raise DLLMError(f"this transformers has no DiffusionGemma (needs >= 5.24): {err}") from err
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        model = DiffusionGemmaForBlockDiffusion.from_pretrained(name_or_path, dtype=dtype)
    except (OSError, ValueError, RuntimeError) as err:
        raise DLLMError(f"cannot load DiffusionGemma from {name_or_path!r}: {err}") from err
    model.to(device).eval().requires_grad_(False)
    eos = model.generation_config.eos_token_id
    eos = [eos] if isinstance(eos, int) else list(eos or [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos:
        eos.append(tokenizer.eos_token_id)
    pad = model.generation_config.pad_token_id
    if pad is None:
        pad = tokenizer.pad_token_id
    if chat is None:
        chat = getattr(tokenizer, "chat_template", None) is not None
    return GemmaDLLM(model=model, tokenizer=tokenizer, eos_ids=tuple(int(e) for e in eos),
                     pad_id=None if pad is None else int(pad), use_chat_template=bool(chat),
                     name=_model_name(name_or_path) if os.path.exists(name_or_path) else name_or_path)
