"""The compare page: watch a masked dLLM unmask one prompt under up to four strategies side by side.

Owns the page, its handlers and the checks of what a visitor or API client sends. Sampling is
`unmasker.iter_unmask` (the one loop); this module only turns its `Step`s into JSON-serialisable
run records and streams them. Rendering of records (chips, plots, cards) lives in `page.views`
(pure functions). It loads nothing: `app.py` loads the dLLM and the shipped policies once and
passes them in as `Resources`. Per-run state lives in `gr.State` (one copy per browser session),
never in module globals; a session's run records expire `session_ttl` seconds after its last run.
"""

from __future__ import annotations

import functools
import html
import json
import math
import os
import random
import time
import typing
from dataclasses import dataclass

import gradio as gr

from . import views

MAX_COLUMNS = 4
TOP_ALTERNATIVES = 5  # alternatives recorded per position for the hover text
MAX_PROMPT_TOKENS = 512  # cap for models without a position limit (keeps a public demo responsive)
MAX_PROMPT_CHARS = 16 * MAX_PROMPT_TOKENS  # checked before tokenising, so a huge paste costs nothing
MAX_GEN_LENGTH = 256
MAX_SEED = 2**32 - 1  # the usual seed range (numpy's); a JavaScript page also keeps it exact
MAX_INT_PARAM = 2**31 - 1  # bound for integer policy parameters (k); torch overflows far above it
STREAM_INTERVAL = 0.05  # seconds between streamed page updates; the first and last are always sent
RANDOM_INIT = "(untrained: random init)"  # checkpoint choice for a learned policy without weights
HIDDEN_PARAMS = {"seed"}  # the learned policy's init seed: the run seed already covers randomness
DEFAULT_TASK = "word_problems"
CARD_SETTINGS = ("temperature", "min_confidence", "decision_threshold")  # what a policy's card sets (card_settings)


@dataclass
class ShippedPolicy:
    name: str
    path: str
    card: dict
    net: object | None = None  # the loaded ConfidencePolicyNet, shared read-only by all runs
    error: str | None = None


@dataclass
class Resources:
    """Everything `app.py` loads once and all sessions share read-only."""

    dllm: object
    policies: dict[str, ShippedPolicy]
    policies_dir: str
    tasks: dict
    examples: list
    model_card: dict


# -- strategies ----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def param_fields() -> dict[str, tuple[type, object]]:
    """Union of the registry's policy parameters: name -> (type, default)."""
    from unmasker.policies import POLICIES, policy_params

    out = {}
    for name, cls in POLICIES.items():
        hints = typing.get_type_hints(cls)
        for f in policy_params(name):
            if f.name in out or f.name in HIDDEN_PARAMS:
                continue
            kind = next((a for a in typing.get_args(hints[f.name]) if a is not type(None)), hints[f.name])
            out[f.name] = (kind, f.default)
    return out


def policy_field_names(name: str) -> set[str]:
    from unmasker.policies import policy_params

    return {f.name for f in policy_params(name)} if name and name != views.OFF else set()


def pick_checkpoint(resources: Resources, task: str, block_length=None) -> str:
    """The shipped policy that best fits `task` at `block_length` (default: the task's semi-AR
    block; the generation length for full diffusion): one that can run there (Learn2PD's filter
    reads only its own block length), trained on the task, at that block length, on the loaded dLLM
    (else on the nearest model it was trained from, its card's `lineage`), at the nearest block
    length, multiplicative reward, alpha closest to 1, then the best validation reward; or
    RANDOM_INIT."""
    usable = [p for p in resources.policies.values() if p.net is not None]
    if not usable:
        return RANDOM_INIT
    block = block_length
    if block is None:
        block = resources.tasks[task].block_length if task in resources.tasks else None

    # the loaded model, then the models it was trained from (its card's "lineage", nearest first)
    kin = [resources.model_card.get("name")] + list(resources.model_card.get("lineage") or [])

    def fit(p):
        c = p.card
        trained_on = os.path.basename(str(c.get("model", "")).rstrip("/"))
        closeness = -kin.index(trained_on) if trained_on in kin else -len(kin)
        gap = abs(int(c.get("block_length") or 0) - int(block or 0))  # 0: trained at this block length
        runs = c.get("family", "paper") == "paper" or gap == 0
        return (runs, c.get("task") == task, gap == 0, closeness, -gap,
                c.get("reward") == "multiplicative",
                -abs(float(c.get("alpha", 1.0)) - 1.0), float(c.get("val_reward") or 0.0))

    return max(usable, key=fit).name


def card_settings(resources: Resources, ckpt: str) -> dict:
    """The test-time settings a shipped policy's card gives: its temperature, where the report
    picked one on validation problems its confidence floor (0: the policy as trained), and for
    Learn2PD's filter its decision threshold (0: Bernoulli draws, the paper's policy)."""
    card = resources.policies[ckpt].card if ckpt in resources.policies else {}
    return {"temperature": card.get("temperature", 1.0), "min_confidence": card.get("min_confidence", 0.0),
            "decision_threshold": card.get("decision_threshold", 0.0)}


def default_strategies(resources: Resources) -> list[dict]:
    ckpt = pick_checkpoint(resources, DEFAULT_TASK)
    return [
        {"policy": "learned", "params": {"checkpoint": ckpt, **card_settings(resources, ckpt), "beta": 1.0}},
        {"policy": "confidence_threshold", "params": {"threshold": 0.9}},
        {"policy": "top_k_confidence", "params": {"k": 1}},
        {"policy": views.OFF, "params": {}},
    ]


def make_policy(resources: Resources, spec: dict):
    """(policy, label, params) for a strategy spec {"policy": name, "params": {...}}; policy is
    None for an "off" column. Raises ValueError (the library's message) for a bad name or value."""
    from unmasker.policies import POLICIES, build_policy

    if not isinstance(spec, dict):
        raise ValueError(f"expected {{'policy': name, 'params': {{...}}}}, got {spec!r}")
    name = spec.get("policy") or views.OFF
    if name == views.OFF:
        return None, views.OFF, {}
    if not isinstance(spec.get("params") or {}, dict):
        raise ValueError(f"params must be a dict of parameter values, got {spec['params']!r}")
    kinds = {n: kind for n, (kind, _) in param_fields().items()}
    # gr.Number and JSON clients send 2.0 for an integer field.
    params = {k: int(v) if kinds.get(k) is int and isinstance(v, float) and v.is_integer() else v
              for k, v in (spec.get("params") or {}).items()}
    for k, v in params.items():  # what the library's own checks would meet only as a torch error
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"{k}={v}: must be a finite number")
        if isinstance(v, int) and abs(v) > MAX_INT_PARAM:
            raise ValueError(f"{k}={_short(v)}: too large (at most {MAX_INT_PARAM})")
    shown = {k: v for k, v in params.items() if k != "fallback"}
    ckpt = params.pop("checkpoint", None) or RANDOM_INIT if name == "learned" else None
    if ckpt is not None and not isinstance(ckpt, str):
        raise ValueError(f"checkpoint={ckpt!r}: must be the name of a shipped policy")
    if ckpt is None or ckpt == RANDOM_INIT:
        policy = build_policy(name, **params)
        if ckpt:
            shown["checkpoint"] = "random init"
        return policy, _label(name, shown), params
    shipped = resources.policies.get(ckpt)
    if shipped is None or shipped.net is None:
        usable = sorted(p.name for p in resources.policies.values() if p.net is not None)
        raise ValueError(f"learned policy {ckpt!r} " + (f"cannot be used: {shipped.error}" if shipped else
                                                         f"is not shipped; available: {usable or 'none'}"))
    unknown = set(params) - policy_field_names(name)
    if unknown:
        raise ValueError(f"policy {name!r} has no parameter(s) {sorted(unknown)}")
    # The network loaded at start-up, shared read-only by every run.
    policy = POLICIES[name](checkpoint=shipped.path, net=shipped.net, **params)
    return policy, _label(name, shown), {**params, "checkpoint": ckpt}


def _label(name: str, params: dict) -> str:
    inner = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
    return f"{views.policy_label(name)} ({inner})" if inner else views.policy_label(name)


def _as_int(name: str, value, low: int | None = None, high: int | None = None) -> int:
    """A page or API value (number or numeric string) as an int in [low, high], else ValueError
    with a message for the visitor (NaN and infinities are not integers)."""
    if value is None or value == "":
        raise ValueError(f"{name} is empty")
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{name}={value!r}: must be an integer")
    if isinstance(value, str):
        value = value.strip()
        if not value.lstrip("-").isdigit():
            raise ValueError(f"{name}={value!r}: must be an integer")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(f"{name}={value!r}: must be an integer")
    n = int(value)
    if (low is not None and n < low) or (high is not None and n > high):
        raise ValueError(f"{name}={_short(n)}: must be an integer from {low} to {high}")
    return n


def _short(n: int) -> str:
    """An integer for a message: 1e+300 rather than its 301 digits."""
    return str(n) if abs(n) < 10**24 else f"{n:.3e}"


def _as_float(name: str, value) -> float:
    """A page or API value (number or numeric string) as a finite float, else ValueError."""
    if value is None or value == "":
        raise ValueError(f"{name} is empty")
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{name}={value!r}: must be a number")
    try:
        x = float(value)
    except (ValueError, OverflowError):
        raise ValueError(f"{name}={value!r}: must be a number") from None
    if not math.isfinite(x):
        raise ValueError(f"{name}={value!r}: must be a finite number")
    return x


def vocab_check(resources: Resources, prompt) -> tuple[list[str], str]:
    """The prompt's words the loaded model does not know (read as its unknown token), and a page
    note listing them with one prompt per task family that the model does understand ("" if none)."""
    unknown = resources.dllm.unknown_words((prompt or "").strip())
    if not unknown:
        return [], ""
    words = ", ".join(f"`{w}`" for w in unknown[:20]) + (f" and {len(unknown) - 20} more" if len(unknown) > 20 else "")
    first = {}
    for p in resources.examples:
        if not getattr(resources.tasks[p.task], "heldout", False):
            first.setdefault(p.task, p)
    families = "\n".join(f"- *{p.task}*: {p.prompt}" for p in first.values())
    note = (f"⚠️ **{resources.dllm.name} does not know {len(unknown)} word(s) of this prompt:** {words}. "
            f"It reads each as `{resources.dllm.tokenizer.unk_token}`, so its answer is likely meaningless. "
            f"Rephrase with words it knows; it understands prompts like these:\n{families}")
    return unknown, note


def find_problem(resources: Resources, prompt: str, drawn):
    """The task problem this prompt came from (drawn in this session or an example), if any."""
    for p in ([drawn] if drawn else []) + resources.examples:
        if p.prompt == prompt:
            return p
    return None


def run_columns(resources: Resources, prompt, gen_length, block_length, seed, temperature, strategies, drawn=None):
    """Run all strategy columns on one prompt, one step per column in turn, and yield the list of
    run records after each round (at most every STREAM_INTERVAL s; the first and last always).
    Bad input raises ValueError before anything runs; running out of memory raises `OutOfMemory`
    (a ValueError) with a message for the visitor."""
    import torch

    import unmasker

    dllm = resources.dllm
    if prompt is not None and not isinstance(prompt, str):
        raise ValueError(f"The prompt must be text, got {type(prompt).__name__} {prompt!r:.80}")
    prompt = (prompt or "").strip()
    if not prompt:
        raise ValueError("The prompt is empty: type one, pick an example or draw a new random problem.")
    if len(prompt) > MAX_PROMPT_CHARS:  # before tokenising it
        raise ValueError(f"The prompt is too long: {len(prompt)} characters, at most {MAX_PROMPT_CHARS}.")
    gen_length, block_length = _as_int("gen_length", gen_length), _as_int("block_length", block_length)
    seed = _as_int("seed", seed, 0, MAX_SEED)
    if gen_length > MAX_GEN_LENGTH:
        raise ValueError(f"gen_length={gen_length}: at most {MAX_GEN_LENGTH} in this demo")
    temperature = _as_float("temperature", temperature)
    config = unmasker.SamplerConfig(gen_length, block_length, temperature, TOP_ALTERNATIVES)
    limit = [x for x in (dllm.max_prompt_tokens(gen_length), MAX_PROMPT_TOKENS) if x is not None]
    ids, att = dllm.encode([prompt])
    if ids.shape[1] > min(limit):
        raise ValueError(f"The prompt is too long: {ids.shape[1]} tokens, but at most {max(min(limit), 0)} fit "
                         f"with gen_length={gen_length} (the model has {dllm.max_positions} positions).")
    if isinstance(strategies, str):
        try:
            strategies = json.loads(strategies) if strategies.strip() else []
        except json.JSONDecodeError as err:
            raise ValueError(f"strategies is not valid JSON: {err}") from None
    if not isinstance(strategies, list) or not strategies:
        raise ValueError("strategies must be a list of {'policy': name, 'params': {...}}")
    if len(strategies) > MAX_COLUMNS:
        raise ValueError(f"at most {MAX_COLUMNS} strategies, got {len(strategies)}")
    unknown, _ = vocab_check(resources, prompt)
    records, runs = [], []
    for i, spec in enumerate(strategies):
        t0 = time.perf_counter()
        try:
            policy, label, params = make_policy(resources, spec)
        except ValueError as err:
            name = views.policy_label(str(spec.get("policy"))) if isinstance(spec, dict) else "?"
            raise ValueError(f"Strategy {i + 1} ({name}): {err}") from None
        if policy is None:
            records.append({"policy": views.OFF})
            continue
        rec = views.new_record(spec["policy"], label, params, config.gen_length, config.block_length, seed,
                                dllm.mask_id)
        rec["wall_s"] = time.perf_counter() - t0
        rec["unknown_words"] = unknown
        records.append(rec)
        runs.append((rec, unmasker.iter_unmask(dllm, policy, (ids, att), config, seed)))
    if not runs:
        raise ValueError("All strategy columns are off: choose at least one strategy.")
    problem = find_problem(resources, prompt, drawn)
    last_yield = None
    while runs:
        for rec, it in list(runs):
            t0 = time.perf_counter()
            try:
                step = next(it, None)
            except torch.OutOfMemoryError:
                runs.clear()  # drop every run's tensors before the next visitor's run
                _release_memory()
                raise OutOfMemory(views.out_of_memory_message(gen_length, len(records))) from None
            rec["wall_s"] += time.perf_counter() - t0
            if step is None:
                runs.remove((rec, it))
                _finish(rec, resources, problem)
            else:
                views.add_step(rec, step, dllm.token_strings, dllm.eos_ids, dllm.pad_id)
        now = time.perf_counter()
        if last_yield is None or not runs or now - last_yield >= STREAM_INTERVAL:
            last_yield = now
            yield records


class OutOfMemory(ValueError):
    """A run the device had no memory for: a message for the visitor, and the server keeps serving."""


def _release_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _finish(rec: dict, resources: Resources, problem) -> None:
    import torch

    rec["done"] = True
    rec["wall_s"] = round(rec["wall_s"], 4)
    rec["text"] = resources.dllm.decode(torch.tensor([rec["token_ids"]]))[0]
    if problem is not None:
        rec["correct"] = bool(resources.tasks[problem.task].verify(rec["text"], problem))


# -- page ----------------------------------------------------------------------------------------
def _strategy_column(i: int, default: dict, ckpt_choices: list[str]):
    """One strategy column: policy dropdown, its parameter widgets (only the chosen policy's are
    visible), then the result views. Returns (dropdown, {param: widget}, info, canvas, slider)."""
    from unmasker.policies import POLICIES

    choices = [(views.policy_label(n), n) for n in POLICIES] + [("— off —", views.OFF)]
    with gr.Column(min_width=220, elem_classes="um-col", elem_id=f"col-{i}"):
        pol = gr.Dropdown(choices, value=default["policy"], label=f"Strategy {i + 1}")
        fields = param_fields()
        shown = policy_field_names(default["policy"])
        widgets = {}
        if "checkpoint" in fields:
            widgets["checkpoint"] = gr.Dropdown(ckpt_choices, value=default["params"].get("checkpoint", RANDOM_INIT),
                                                label="learned policy", visible="checkpoint" in shown,
                                                elem_id=f"ckpt-{i}")
        with gr.Row():
            for name, (kind, value) in fields.items():
                value = default["params"].get(name, value)
                common = dict(label=name, visible=name in shown, min_width=max(120, 10 * len(name)))  # fits its name
                if kind in (int, float):
                    widgets[name] = gr.Number(value, precision=0 if kind is int else None, **common)
                elif kind is str and name != "checkpoint":
                    widgets[name] = gr.Textbox(value, **common)
        for name, (kind, value) in fields.items():
            if kind is bool:
                widgets[name] = gr.Checkbox(bool(default["params"].get(name, value)), label=name, visible=name in shown)
        info = gr.Markdown("*not run yet*", elem_classes="um-info", elem_id=f"info-{i}")
        canvas = gr.HTML(views.canvas_html(None), css_template=views.CANVAS_CSS, elem_id=f"canvas-{i}")
        slider = gr.Slider(0, 1, value=0, step=1, label="Step (drag to scrub)", elem_id=f"slider-{i}")
    pol.change(lambda name: [gr.update(visible=n in policy_field_names(name)) for n in widgets],
               pol, list(widgets.values()), queue=False, api_visibility="private")
    return pol, widgets, info, canvas, slider


def build_demo(resources: Resources, concurrency: int = 2, session_ttl: float = 1800.0) -> gr.Blocks:
    """The page. `concurrency`: runs computed at once; `session_ttl`: seconds a session keeps its
    run records after its last run (app.py's --concurrency and --session_ttl)."""
    defaults = default_strategies(resources)
    ckpt_choices = [p.name for p in resources.policies.values() if p.net is not None] + [RANDOM_INIT]
    first = resources.examples[0]
    with gr.Blocks(title="Unmasker: watch a diffusion LM unmask") as demo:
        # Per-session state, deleted by Gradio `session_ttl` seconds after it was last set (a closed
        # tab's after an hour at most: Gradio's own rule), so a public host does not keep every
        # visitor's runs. An expired session reads the defaults again.
        ttl = session_ttl
        drawn = gr.State(None, time_to_live=ttl)  # the Problem drawn by "new random problem" in this session
        draws = gr.State(0, time_to_live=ttl)  # how many problems this session drew (seeds the next draw)
        runs = gr.State([], time_to_live=ttl)  # this session's run records, for scrubbing
        gr.Markdown(
            "# Unmasker\nA masked diffusion LM fills its canvas a few tokens per step; the *unmasking "
            f"policy* decides which ones. Compare policies on one prompt. Model: **{resources.dllm.name}**.",
            elem_classes="um-header",
        )
        with gr.Tab("Compare"):
            with gr.Row():
                with gr.Column(scale=3):
                    prompt = gr.Textbox(first.prompt, label="Prompt", lines=3, max_lines=8, elem_id="prompt")
                    with gr.Row():
                        task = gr.Dropdown(list(resources.tasks), value=DEFAULT_TASK, label="Task family", scale=2,
                                           elem_id="task")
                        draw_btn = gr.Button("New random problem", scale=1, elem_id="draw")
                    vocab_md = gr.Markdown(vocab_check(resources, first.prompt)[1], elem_id="vocab-note")
                    problem_md = gr.Markdown("")
                with gr.Column(scale=2):
                    with gr.Row():
                        gen_length = gr.Slider(4, MAX_GEN_LENGTH, value=resources.tasks[first.task].gen_length,
                                               step=4, label="Generation length", elem_id="gen-length")
                        block_length = gr.Number(resources.tasks[first.task].block_length, precision=0,
                                                 label="Block length", elem_id="block-length")
                    with gr.Row():
                        full_btn = gr.Button("Full diffusion (block = length)", size="sm")
                        seed = gr.Number(0, precision=0, label="Seed", min_width=80)
                        temperature = gr.Number(0.0, label="dLLM temperature (0 = greedy)", min_width=80)
                    run_btn = gr.Button("▶ Run all strategies", variant="primary", size="lg", elem_id="run")
            examples = gr.Examples(
                [[p.prompt, p.task, resources.tasks[p.task].gen_length, resources.tasks[p.task].block_length]
                 for p in resources.examples], [prompt, task, gen_length, block_length],
                label="Examples (test split, answers known)")
            error_md = gr.Markdown("", visible=False, elem_classes="um-error", elem_id="error")
            gr.HTML(views.LEGEND_HTML, css_template=views.CANVAS_CSS)
            spec = gr.JSON(visible="hidden", label="strategies")
            with gr.Row(equal_height=False):
                columns = [_strategy_column(i, defaults[i], ckpt_choices) for i in range(MAX_COLUMNS)]
            with gr.Row():
                order_plot = gr.Plot(label="Decode order", elem_id="order-plot", scale=3)
                count_plot = gr.Plot(label="Tokens per step", elem_id="count-plot", scale=2)
            with gr.Accordion("Raw trajectories (JSON, as returned by the `run` API)", open=False):
                result = gr.JSON(label="result")
        with gr.Tab("Policies", elem_id="policies-tab"):
            cards = [{"name": p.name, "card": p.card, "error": p.error} for p in resources.policies.values()]
            gr.Markdown(views.policies_markdown(cards, resources.policies_dir, resources.model_card))

        # -- events --------------------------------------------------------------------------
        col_inputs = [w for pol, widgets, *_ in columns for w in (pol, *widgets.values())]
        names = list(columns[0][1])
        infos, canvases, sliders = ([c[k] for c in columns] for k in (2, 3, 4))
        ckpt_dds = [c[1]["checkpoint"] for c in columns if "checkpoint" in c[1]]
        outputs = [result, error_md, runs, *infos, *canvases, *sliders, order_plot, count_plot]

        def collect(*values):
            """Widget values -> the list of strategy specs that the `run` API takes."""
            out, width = [], 1 + len(names)
            for i in range(MAX_COLUMNS):
                pol, *vals = values[i * width:(i + 1) * width]
                keep = policy_field_names(pol)
                out.append({"policy": pol, "params": {n: v for n, v in zip(names, vals) if n in keep}})
            return out

        def run(prompt, gen_length, block_length, seed, temperature, strategies, drawn):
            """Stream the columns: result JSON (final yield), error, state, infos, canvases, sliders, plots."""
            try:
                stream = run_columns(resources, prompt, gen_length, block_length, seed, temperature, strategies, drawn)
                records = next(stream)
            except ValueError as err:
                gr.Warning(str(err))
                yield ({"error": str(err)}, gr.update(value=views.error_markdown(str(err)), visible=True),
                       *[gr.skip()] * (len(outputs) - 2))
                return
            first, sent_final = True, set()
            while records is not None:
                final = all(r.get("done") or r.get("policy") == views.OFF for r in records)
                cols = (records + [None] * MAX_COLUMNS)[:MAX_COLUMNS]
                # A finished column is sent once, and again in the final yield (what API clients get).
                fresh = [final or i not in sent_final for i in range(MAX_COLUMNS)]
                sent_final |= {i for i, r in enumerate(cols) if not r or r.get("done") or r.get("policy") == views.OFF}
                yield (
                    views.result_json(records) if final else gr.skip(),
                    gr.update(value="", visible=False) if first or final else gr.skip(),
                    records,
                    *[views.info_markdown(r) if fresh[i] else gr.skip() for i, r in enumerate(cols)],
                    *[views.canvas_html(r) if fresh[i] else gr.skip() for i, r in enumerate(cols)],
                    *[_slider_update(r) if fresh[i] else gr.skip() for i, r in enumerate(cols)],
                    views.decode_order_figure(records) if final else gr.skip(),
                    views.tokens_per_step_figure(records) if final else gr.skip(),
                )
                first = False
                try:
                    records = next(stream, None)
                except OutOfMemory as err:  # mid-run: the columns shown so far stay, the message says why
                    gr.Warning(str(err))
                    yield ({"error": str(err)}, gr.update(value=views.error_markdown(str(err)), visible=True),
                           *[gr.skip()] * (len(outputs) - 2))
                    return

        def new_problem(task_name, count):
            t = resources.tasks[task_name]
            problem = t.sample(random.Random(f"app/{task_name}/{count}"), "test")
            note = (f"Drawn from the **{task_name}** test split: the answer is known, so each column says whether "
                    f"it is correct (generation length {t.gen_length}, block {t.block_length}).")
            ckpt = pick_checkpoint(resources, task_name)
            return (problem.prompt, t.gen_length, t.block_length, problem, count + 1, note,
                    *[gr.update(value=ckpt) for _ in ckpt_dds])

        def checkpoint_settings(name):
            """Selecting a shipped policy sets what its card gives (CARD_SETTINGS)."""
            if name not in resources.policies:
                return tuple(gr.skip() for _ in CARD_SETTINGS)
            got = card_settings(resources, name)
            return tuple(got[k] for k in CARD_SETTINGS)

        run_btn.click(collect, col_inputs, spec, queue=False, api_visibility="private").then(
            run, [prompt, gen_length, block_length, seed, temperature, spec, drawn], outputs,
            api_name="run", concurrency_limit=concurrency, show_progress="minimal",
            preprocess=False)  # raw values: run_columns checks each one and says what is wrong
        draw_btn.click(new_problem, [task, draws], [prompt, gen_length, block_length, drawn, draws, problem_md,
                                                   *ckpt_dds], api_name="new_problem")
        def setting_checkpoint(task_name, block):
            """The learned columns follow the setting: the best shipped policy for this block length."""
            try:
                block = _as_int("block_length", block)
            except ValueError:
                return [gr.skip() for _ in ckpt_dds]
            ckpt = pick_checkpoint(resources, task_name, block)
            return [gr.update(value=ckpt) for _ in ckpt_dds]

        # An example sets the prompt, the task family and the lengths; the learned columns follow.
        examples.load_input_event.then(setting_checkpoint, [task, block_length], ckpt_dds, queue=False,
                                       api_visibility="private")
        full_btn.click(lambda g: g, gen_length, block_length, queue=False, api_visibility="private").then(
            setting_checkpoint, [task, block_length], ckpt_dds, queue=False, api_visibility="private")
        block_length.input(setting_checkpoint, [task, block_length], ckpt_dds, queue=False,
                           api_visibility="private", trigger_mode="always_last")
        # Said before running: typed words the model cannot read (also an API endpoint).
        prompt.change(lambda text: vocab_check(resources, text)[1], prompt, vocab_md, queue=False,
                      api_name="check_prompt", trigger_mode="always_last", show_progress="hidden")
        for i, (_, widgets, _, canvas, slider) in enumerate(columns):
            if all(k in widgets for k in ("checkpoint", *CARD_SETTINGS)):
                widgets["checkpoint"].change(checkpoint_settings, widgets["checkpoint"],
                                             [widgets[k] for k in CARD_SETTINGS],
                                             queue=False, api_visibility="private")
            slider.input(functools.partial(_scrub, column=i, ttl=ttl), [runs, slider], canvas, queue=False,
                         api_name=f"scrub_{i}", api_visibility="undocumented", trigger_mode="always_last",
                         show_progress="hidden")
    return demo


def _slider_update(rec):
    n = len(rec["committed_per_step"]) if rec and rec.get("committed_per_step") else 0
    return gr.update(maximum=max(1, n - 1), value=max(0, n - 1))


def _scrub(records: list, step, column: int, ttl: float) -> str:
    """The canvas of one column after `step`, from this session's records; a note when the session
    has none (nothing run yet, or its records expired)."""
    if not records:
        return ('<div class="um-empty">No run to show: run the strategies (a session keeps its runs for '
                f'{ttl / 60:g} min after its last run).</div>')
    try:
        step = _as_int("step", step)
    except ValueError as err:
        return f'<div class="um-empty">{html.escape(str(err))}</div>'
    return views.canvas_html(records[column] if column < len(records) else None, step)
