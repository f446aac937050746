"""The DiffusionGemma page: watch each denoising step of the model's own `generate` under up to four
acceptance rules side by side (`python app.py --model <DiffusionGemma folder>`).

Owns: turning `unmasker.gemma.GemmaRun`s into JSON-serialisable run records, pure views of those
records (chips, info, one figure), and the page. Sampling is `GemmaDLLM.generate` (the model's
loop with a recording sampler); nothing here samples. `app.py` loads the model and sends
DiffusionGemma models here; masked dLLMs get `page.compare`. It loads nothing.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass

import gradio as gr
import plotly.graph_objects as go

from . import views

MAX_COLUMNS = 4
MAX_NEW_TOKENS = 1024
MAX_STEPS = 256
RULE_LABELS = {"entropy_bound": "Entropy bound (DiffusionGemma's own)", "top_k": "Top-k confidence",
               "threshold": "Confidence threshold"}
PARAMS = {"entropy_bound": ("entropy_bound",), "top_k": ("k", "sticky"), "threshold": ("threshold", "sticky")}

GEMMA_CSS = """
.um-acc { background: hsl(142, 60%, 82%); border-color: #15803d; }
.um-ren { background: #f3f4f6; color: #9ca3af; border: 1px dashed #9ca3af; }
.um-chg { font-weight: 700; box-shadow: 0 0 0 2px #f59e0b; }
.um-prev { background: hsl(215, 60%, 90%); }
.um-stats { font-size: 12px; color: #374151; padding: 2px 6px; }
"""

LEGEND_HTML = (
    '<div class="um-legend">'
    '<span class="um-tok um-acc">tok</span> accepted: fed back as the next input'
    '<span class="um-tok um-ren">tok</span> renoised: replaced by a random token'
    '<span class="um-tok um-acc um-chg">tok</span> draft (argmax) changed this step'
    '<span class="um-tok um-prev">tok</span> finished canvas'
    " · chips show the draft (argmax), which a canvas outputs at its last step; hover for details</div>"
)


@dataclass
class GemmaResources:
    gemma: object  # unmasker.gemma.GemmaDLLM
    examples: list[str]


# -- records ---------------------------------------------------------------------------------------
def rule_label(name: str, params: dict) -> str:
    inner = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
    base = RULE_LABELS.get(name, name)
    return f"{base} ({inner})" if inner else base


def make_rule(spec) -> tuple[object | None, str, dict]:
    """(rule, label, params) for {"rule": name, "params": {...}}; rule None for an "off" column.
    Raises ValueError with the rule's own message for a bad name or value."""
    from unmasker.gemma import build_acceptance

    if not isinstance(spec, dict):
        raise ValueError(f"expected {{'rule': name, 'params': {{...}}}}, got {spec!r}")
    name = spec.get("rule") or views.OFF
    if name == views.OFF:
        return None, views.OFF, {}
    params = dict(spec.get("params") or {})
    if "k" in params and isinstance(params["k"], float) and params["k"].is_integer():
        params["k"] = int(params["k"])  # gr.Number and JSON clients send 2.0
    return build_acceptance(name, **params), rule_label(name, params), params


def run_record(run, rule: str, label: str, params: dict, token_strings, eos_ids, pad_id) -> dict:
    """A JSON-serialisable record of batch row 0 of a `GemmaRun`: its final tokens and every step
    it paid a decoder pass for (accepted / renoised / changed positions, draft tokens)."""
    eos = set(eos_ids)
    ids = run.tokens[0].tolist()
    steps = []
    for st in run.steps:
        if not bool(st.active[0]):
            continue
        acc, chg = st.accepted[0], st.changed[0]
        steps.append({
            "canvas": st.canvas, "step": st.step, "remaining": st.remaining,
            "argmax_ids": st.argmax[0].tolist(), "argmax": token_strings(st.argmax[0].tolist()),
            "sampled": token_strings(st.sampled[0].tolist()), "input": token_strings(st.input[0].tolist()),
            "next_input": token_strings(st.next_input[0].tolist()),
            "accepted": acc.int().tolist(), "changed": chg.int().tolist(),
            "conf": [round(c, 4) for c in st.confidence[0].tolist()],
            "entropy": [round(h, 3) for h in st.entropy[0].tolist()],
            "n_accepted": int(acc.sum()), "n_renoised": int((~acc).sum()), "n_changed": int(chg.sum()),
            "passes": int(st.passes[0]), "stopped": bool(st.stopped[0]),
        })
    return {
        "rule": rule, "params": params, "label": label, "text": run.texts[0], "token_ids": ids,
        "tokens": token_strings(ids), "kinds": ["eos" if t in eos else "pad" if t == pad_id else "tok" for t in ids],
        "passes": int(run.passes[0]), "tokens_per_forward": round(float(run.tokens_per_forward[0]), 4),
        "canvas_length": run.canvas_length, "canvases": len({s["canvas"] for s in steps}),
        "steps": steps, "wall_s": round(run.elapsed, 4), "done": True,
    }


def run_columns(resources: GemmaResources, prompt, max_new_tokens, max_steps, seed, adaptive_stop,
                confidence_threshold, stability_threshold, strategies) -> list[dict]:
    """Run every column on one prompt (same seed each). Bad input raises ValueError before any run."""
    from unmasker.gemma import GemmaSampling

    g = resources.gemma
    prompt = (prompt or "").strip()
    if not prompt:
        raise ValueError("The prompt is empty: type one or pick an example.")
    ints = {}
    for name, value in (("max_new_tokens", max_new_tokens), ("max_denoising_steps", max_steps), ("seed", seed),
                        ("stability_threshold", stability_threshold)):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{name}={value!r}: must be an integer")
        ints[name] = value
    if ints["max_new_tokens"] > MAX_NEW_TOKENS or ints["max_denoising_steps"] > MAX_STEPS:
        raise ValueError(f"at most {MAX_NEW_TOKENS} new tokens and {MAX_STEPS} steps in this demo")
    sampling = GemmaSampling(max_new_tokens=ints["max_new_tokens"], max_denoising_steps=ints["max_denoising_steps"],
                             adaptive_stop=bool(adaptive_stop), stability_threshold=ints["stability_threshold"],
                             confidence_threshold=float(confidence_threshold or 0.0) if adaptive_stop else 0.005)
    if isinstance(strategies, str):
        strategies = json.loads(strategies) if strategies.strip() else []
    if not isinstance(strategies, list) or not strategies or len(strategies) > MAX_COLUMNS:
        raise ValueError(f"strategies must be a list of 1 to {MAX_COLUMNS} {{'rule': name, 'params': {{...}}}}")
    rules = []
    for i, spec in enumerate(strategies):
        try:
            rules.append(make_rule(spec))
        except ValueError as err:
            raise ValueError(f"Column {i + 1}: {err}") from None
    if all(r is None for r, _, _ in rules):
        raise ValueError("All columns are off: choose at least one acceptance rule.")
    ids, att = g.encode([prompt])
    records = []
    for (rule, label, params), spec in zip(rules, strategies):
        if rule is None:
            records.append({"rule": views.OFF})
            continue
        run = g.generate((ids, att), rule, sampling, seed=ints["seed"])
        records.append(run_record(run, spec["rule"], label, params, g.token_strings, g.eos_ids, g.pad_id))
    return records


# -- views (pure functions of records) -----------------------------------------------------------
def _tip(rec: dict, st: dict, pos: int) -> str:
    nxt = views.display_token(st["next_input"][pos], "tok")
    state = (f"accepted: next input {nxt}" if st["accepted"][pos] else f"renoised: next input {nxt} (random)")
    state += f" · sample {views.display_token(st['sampled'][pos], 'tok')}"
    return (f"position {pos} · draft {views.display_token(st['argmax'][pos], 'tok')}"
            f"{' (changed)' if st['changed'][pos] else ''}\n{state}\n"
            f"p = {st['conf'][pos]:.3f} · entropy {st['entropy'][pos]:.3f}\n"
            f"input was {views.display_token(st['input'][pos], 'tok')}")


def canvas_html(rec: dict | None, step: int | None = None) -> str:
    """Step `step` (default: the last) of a column: finished canvases, then the current canvas's
    draft chips coloured accepted / renoised, outlined where the draft changed."""
    if not rec:
        return '<div class="um-empty">No run yet.</div>'
    if rec.get("rule") == views.OFF:
        return '<div class="um-empty">Column off.</div>'
    steps = rec["steps"]
    if not steps:
        return '<div class="um-empty">No step recorded.</div>'
    n = len(steps)
    step = n - 1 if step is None else min(max(int(step), 0), n - 1)
    st = steps[step]
    C = rec["canvas_length"]
    chips = []
    for pos in range(st["canvas"] * C):  # earlier canvases: their final tokens
        chips.append(f'<span class="um-tok um-prev" data-tip="finished canvas">'
                     f'{views.display_token(rec["tokens"][pos], rec["kinds"][pos])}</span>')
    for pos in range(C):
        cls = "um-acc" if st["accepted"][pos] else "um-ren"
        cls += " um-chg" if st["changed"][pos] else ""
        tip = html.escape(_tip(rec, st, pos), quote=True)
        chips.append(f'<span class="um-tok {cls}" data-tip="{tip}">'
                     f'{views.display_token(st["argmax"][pos], "tok")}</span>')
    stats = (f'canvas {st["canvas"] + 1}/{rec["canvases"]} · step {st["step"] + 1} · accepted {st["n_accepted"]} · '
             f'renoised {st["n_renoised"]} · changed {st["n_changed"]} · passes {st["passes"]}'
             + (" · adaptive stop" if st["stopped"] else ""))
    return (f'<div class="um-stats">{stats}</div><div class="um-canvas" data-state="done" data-step="{step}" '
            f'data-steps="{n}" data-accepted="{st["n_accepted"]}" data-renoised="{st["n_renoised"]}" '
            f'data-changed="{st["n_changed"]}">' + "".join(chips) + "</div>")


def info_markdown(rec: dict | None) -> str:
    if not rec:
        return "*not run yet*"
    if rec.get("rule") == views.OFF:
        return "*off*"
    per_canvas = {}
    for s in rec["steps"]:
        per_canvas[s["canvas"]] = per_canvas.get(s["canvas"], 0) + 1
    stops = sum(s["stopped"] for s in rec["steps"])
    return "  \n".join([
        f"**{html.escape(rec['label'], quote=False)}**",
        f"decoder passes **{rec['passes']}** · {rec['tokens_per_forward']:g} tokens/pass · "
        f"{rec['wall_s'] * 1000:.0f} ms",
        f"{rec['canvases']} canvas(es) of {rec['canvas_length']}, steps {list(per_canvas.values())}"
        + (f", {stops} ended by the adaptive stop" if stops else ""),
        f"answer: `{rec['text'].replace('`', chr(39)) or '(empty)'}`",
    ])


def steps_figure(records: list[dict]) -> go.Figure:
    """Accepted (solid) and changed (dotted) positions at each step, one colour per column."""
    fig = go.Figure()
    for i, rec in enumerate(records):
        if not rec or rec.get("rule") == views.OFF:
            continue
        x = list(range(len(rec["steps"])))
        color = views.COLUMN_COLORS[i % 4]
        fig.add_trace(go.Scatter(x=x, y=[s["n_accepted"] for s in rec["steps"]], mode="lines+markers",
                                 line=dict(color=color), name=f"{i + 1} · accepted"))
        fig.add_trace(go.Scatter(x=x, y=[s["n_changed"] for s in rec["steps"]], mode="lines",
                                 line=dict(color=color, dash="dot"), name=f"{i + 1} · changed"))
    fig.update_layout(title="Accepted (solid) and changed (dotted) positions per step", xaxis_title="step",
                      yaxis_title="positions", height=380, margin=dict(l=50, r=20, t=60, b=40),
                      template="plotly_white", legend=dict(orientation="h", yanchor="top", y=-0.22, x=0))
    return fig


def result_json(records: list[dict]) -> list[dict]:
    """The API result: records without the per-position hover details."""
    drop = {"argmax", "sampled", "input", "next_input", "conf", "entropy"}
    return [r if r.get("rule") == views.OFF else
            {**r, "steps": [{k: v for k, v in s.items() if k not in drop} for s in r["steps"]]} for r in records]


# -- page ----------------------------------------------------------------------------------------
def default_columns(canvas_length: int, steps: int) -> list[dict]:
    k = max(1, math.ceil(canvas_length / steps))  # accepts the whole canvas by the last step
    return [{"rule": "entropy_bound", "params": {"entropy_bound": 0.1}},
            {"rule": "top_k", "params": {"k": k, "sticky": False}},
            {"rule": "top_k", "params": {"k": k, "sticky": True}},
            {"rule": "threshold", "params": {"threshold": 0.9, "sticky": False}}]


def _column(i: int, default: dict):
    choices = [(label, name) for name, label in RULE_LABELS.items()] + [("— off —", views.OFF)]
    p = default["params"]
    with gr.Column(min_width=220, elem_classes="um-col", elem_id=f"gcol-{i}"):
        rule = gr.Dropdown(choices, value=default["rule"], label=f"Acceptance {i + 1}")
        shown = set(PARAMS.get(default["rule"], ()))
        with gr.Row():
            widgets = {
                "entropy_bound": gr.Number(p.get("entropy_bound", 0.1), label="entropy_bound", min_width=100,
                                           visible="entropy_bound" in shown),
                "k": gr.Number(p.get("k", 1), precision=0, label="k", min_width=80, visible="k" in shown),
                "threshold": gr.Number(p.get("threshold", 0.9), label="threshold", min_width=100,
                                       visible="threshold" in shown),
            }
        widgets["sticky"] = gr.Checkbox(bool(p.get("sticky", False)), label="sticky (never renoise accepted)",
                                        visible="sticky" in shown)
        info = gr.Markdown("*not run yet*", elem_classes="um-info", elem_id=f"ginfo-{i}")
        canvas = gr.HTML(canvas_html(None), css_template=views.CANVAS_CSS + GEMMA_CSS, elem_id=f"gcanvas-{i}")
        slider = gr.Slider(0, 1, value=0, step=1, label="Step (drag to scrub)", elem_id=f"gslider-{i}")
    rule.change(lambda name: [gr.update(visible=n in PARAMS.get(name, ())) for n in widgets], rule,
                list(widgets.values()), queue=False, api_visibility="private")
    return rule, widgets, info, canvas, slider


def build_demo(resources: GemmaResources) -> gr.Blocks:
    g = resources.gemma
    gen_cfg = g.model.generation_config
    steps0 = int(getattr(gen_cfg, "max_denoising_steps", None) or 48)
    C = g.canvas_length
    defaults = default_columns(C, steps0)
    with gr.Blocks(title="Unmasker: DiffusionGemma denoising steps") as demo:
        runs = gr.State([])
        gr.Markdown(
            f"# Unmasker · DiffusionGemma\nModel: **{html.escape(g.name)}** (canvas {C}). Each step samples every "
            "position; the *acceptance rule* picks which samples are fed back, the rest are renoised to random "
            "tokens. Nothing is sticky in DiffusionGemma's own rule; a canvas outputs the argmax of its last step, "
            "and the adaptive stop can end a canvas early.", elem_classes="um-header")
        with gr.Row():
            with gr.Column(scale=3):
                prompt = gr.Textbox(resources.examples[0], label="Prompt", lines=3, max_lines=8, elem_id="gprompt")
                gr.Examples([[e] for e in resources.examples], [prompt], label="Examples")
            with gr.Column(scale=2):
                with gr.Row():
                    max_new = gr.Number(C, precision=0, label="New tokens (whole canvases)", elem_id="gmax-new")
                    max_steps = gr.Number(steps0, precision=0, label="Max steps per canvas", elem_id="gsteps")
                    seed = gr.Number(0, precision=0, label="Seed", min_width=80)
                with gr.Row():
                    adaptive = gr.Checkbox(True, label="Adaptive stop (stable and confident)")
                    conf_thr = gr.Number(float(getattr(gen_cfg, "confidence_threshold", None) or 0.005),
                                         label="confidence threshold (mean entropy)", min_width=100)
                    stab_thr = gr.Number(int(getattr(gen_cfg, "stability_threshold", None) or 1), precision=0,
                                         label="stability threshold (steps)", min_width=100)
                run_btn = gr.Button("▶ Run all rules", variant="primary", size="lg", elem_id="grun")
        error_md = gr.Markdown("", visible=False, elem_classes="um-error", elem_id="gerror")
        gr.HTML(LEGEND_HTML, css_template=views.CANVAS_CSS + GEMMA_CSS)
        spec = gr.JSON(visible="hidden", label="strategies")
        with gr.Row(equal_height=False):
            columns = [_column(i, defaults[i]) for i in range(MAX_COLUMNS)]
        plot = gr.Plot(label="Accepted and changed per step", elem_id="gplot")
        with gr.Accordion("Raw records (JSON, as returned by the `run` API)", open=False):
            result = gr.JSON(label="result")

        names = list(columns[0][1])
        col_inputs = [w for rule, widgets, *_ in columns for w in (rule, *widgets.values())]
        infos, canvases, sliders = ([c[k] for c in columns] for k in (2, 3, 4))
        outputs = [result, error_md, runs, *infos, *canvases, *sliders, plot]

        def collect(*values):
            out, width = [], 1 + len(names)
            for i in range(MAX_COLUMNS):
                rule, *vals = values[i * width:(i + 1) * width]
                keep = PARAMS.get(rule, ())
                out.append({"rule": rule, "params": {n: v for n, v in zip(names, vals) if n in keep}})
            return out

        def run(prompt, max_new, max_steps, seed, adaptive, conf_thr, stab_thr, strategies):
            try:
                records = run_columns(resources, prompt, max_new, max_steps, seed, adaptive, conf_thr, stab_thr,
                                      strategies)
            except ValueError as err:
                gr.Warning(str(err))
                return ({"error": str(err)}, gr.update(value=views.error_markdown(str(err)), visible=True),
                        *[gr.skip()] * (len(outputs) - 2))
            cols = (records + [None] * MAX_COLUMNS)[:MAX_COLUMNS]
            return (result_json(records), gr.update(value="", visible=False), records,
                    *[info_markdown(r) for r in cols], *[canvas_html(r) for r in cols],
                    *[gr.update(maximum=max(1, len(r["steps"]) - 1) if r and r.get("steps") else 1,
                                value=max(0, len(r["steps"]) - 1) if r and r.get("steps") else 0) for r in cols],
                    steps_figure(records))

        run_btn.click(collect, col_inputs, spec, queue=False, api_visibility="private").then(
            run, [prompt, max_new, max_steps, seed, adaptive, conf_thr, stab_thr, spec], outputs,
            api_name="run", concurrency_limit=1, show_progress="minimal")
        for i, (_, _, _, canvas, slider) in enumerate(columns):
            slider.input(lambda recs, step, i=i: canvas_html(recs[i] if i < len(recs) else None, step),
                         [runs, slider], canvas, queue=False, api_visibility="private",
                         trigger_mode="always_last", show_progress="hidden")
    return demo
