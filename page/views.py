"""Pure view functions for the demo app: run records in, HTML / Markdown / plotly figures out.

A *run record* is a JSON-serialisable dict describing one strategy column's trajectory, folded
from the sampler's `Step`s by `new_record` / `add_step`. Everything else here is a function of
records only: no model, no torch import, no Gradio, so the page can be re-rendered for any step
(scrubbing) and tested without a server. Records stay in a visitor's session for scrubbing, so
they are compact: per position one string of top alternatives, per step only the commit count.
"""

from __future__ import annotations

import html
import json
import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

# Display names for the registry's policies (a policy missing here shows its registry name).
POLICY_LABELS = {
    "learned": "Learned policy",
    "confidence_threshold": "Fast-dLLM threshold",
    "top_k_confidence": "Top-k confidence (LLaDA)",
    "factor": "Fast-dLLM factor",
    "margin": "Top-k margin",
    "entropy": "Top-k entropy (Dream)",
    "eb_sampler": "EB-sampler",
    "random": "Random order",
}
OFF = "off"
COLUMN_COLORS = ("#7c3aed", "#0891b2", "#ea580c", "#16a34a")

# Token chips. Hue says the state, lightness the confidence (darker = more confident).
CANVAS_CSS = """
.um-canvas { display: flex; flex-wrap: wrap; gap: 3px; padding: 6px; min-height: 40px;
  font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 13px; line-height: 1.2; }
.um-tok { display: inline-block; position: relative; padding: 2px 5px; border-radius: 5px;
  border: 1px solid transparent; min-width: 14px; text-align: center; white-space: pre; cursor: default;
  color: #111827; }
.um-tok[data-tip]:hover { outline: 2px solid #7c3aed; }
.um-tok[data-tip]:hover::after { content: attr(data-tip); position: absolute; left: 0; top: calc(100% + 4px);
  z-index: 100; background: #111827; color: #f9fafb; padding: 6px 8px; border-radius: 6px; font-size: 12px;
  font-weight: 400; white-space: pre; text-align: left; pointer-events: none;
  box-shadow: 0 4px 12px rgba(0, 0, 0, 0.25); }
.um-masked { background: #e5e7eb; color: #9ca3af; }
.um-new { border-color: #c2410c; box-shadow: 0 0 0 1px #fdba74; font-weight: 600; }
.um-eos { background: #1f2937 !important; color: #f9fafb; font-size: 11px; }
.um-pad { background: #f3f4f6 !important; color: #6b7280; border: 1px dashed #9ca3af; font-size: 11px; }
.um-legend { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; font-size: 12px;
  color: #6b7280; padding: 0 6px 4px; }
.um-empty { color: #9ca3af; font-style: italic; padding: 8px; }
"""

PAGE_CSS = """
.um-header h1 { margin-bottom: 0; }
.um-header p { margin-top: 4px; color: #6b7280; }
.um-error { border-left: 4px solid #dc2626; background: #fef2f2; padding: 6px 12px; border-radius: 4px; }
.um-error p { color: #991b1b; margin: 0; }
.um-col { border-top: 4px solid var(--um-col-color, #7c3aed); border-radius: 6px; }
.um-info p { margin: 2px 0; }
"""


def policy_label(name: str) -> str:
    return POLICY_LABELS.get(name, name)


def display_token(text: str, kind: str) -> str:
    """A token string as it should appear in a chip (HTML-escaped)."""
    if kind == "eos":
        return "EOS"
    if kind == "pad":
        return "PAD"
    # Byte-level BPE / SentencePiece word markers become a visible space; newlines an arrow.
    text = text.replace("Ġ", " ").replace("▁", " ").replace("Ċ", "↵").replace("\n", "↵")
    return html.escape(text or "∅").replace("{", "&#123;").replace("}", "&#125;")


def shade(status: str, confidence: float) -> str:
    """Background colour of a committed chip: orange if committed in the shown step, blue if
    earlier; lighter = lower confidence."""
    c = min(max(float(confidence), 0.0), 1.0)
    if status == "new":
        return f"hsl(28, 95%, {round(88 - 30 * c)}%)"
    return f"hsl(215, 75%, {round(94 - 26 * c)}%)"


def tooltip(rec: dict, pos: int) -> str:
    """Hover text for a committed position: step, confidence and the top alternatives."""
    lines = [f"position {pos} · unmasked at step {rec['order'][pos]} · p = {rec['conf'][pos]:.3f}"]
    if rec["alts"][pos]:
        lines.append("top alternatives: " + rec["alts"][pos])
    return "\n".join(lines)


def canvas_html(rec: dict | None, step: int | None = None) -> str:
    """The generation canvas after `step` (default: the latest step) as token chips.

    masked = grey dot, committed in this step = orange with an outline, committed earlier = blue;
    the shade encodes the commit-time confidence. Hovering a chip shows its confidence and the
    model's top alternatives at the moment it was committed.
    """
    if not rec:
        return '<div class="um-empty">No run yet.</div>'
    if rec.get("policy") == OFF:
        return '<div class="um-empty">Column off.</div>'
    n = len(rec["committed_per_step"])
    last = n - 1
    step = last if step is None else min(max(int(step), -1), last)
    chips = []
    for pos, (order, kind) in enumerate(zip(rec["order"], rec["kinds"])):
        if order < 0 or order > step:
            chips.append(f'<span class="um-tok um-masked" data-tip="position {pos}: masked">·</span>')
            continue
        status = "new" if order == step else "old"
        extra = f" um-{kind}" if kind in ("eos", "pad") else ""
        style = "" if extra else f' style="background:{shade(status, rec["conf"][pos])}"'
        tip = html.escape(tooltip(rec, pos), quote=True)
        text = display_token(rec["tokens"][pos], kind)
        chips.append(f'<span class="um-tok um-{status}{extra}"{style} data-tip="{tip}">{text}</span>')
    state = "done" if rec.get("done") else "running"
    return (
        f'<div class="um-canvas" data-state="{state}" data-step="{step}" data-steps="{n}">'
        + "".join(chips) + "</div>"
    )


LEGEND_HTML = (
    '<div class="um-legend">'
    '<span class="um-tok um-masked">·</span> masked'
    f'<span class="um-tok um-new" style="background:{shade("new", 0.9)}">tok</span> committed this step'
    f'<span class="um-tok" style="background:{shade("old", 0.9)}">tok</span> committed earlier'
    f'<span class="um-tok" style="background:{shade("old", 0.2)}">tok</span> low confidence'
    '<span class="um-tok um-eos">EOS</span><span class="um-tok um-pad">PAD</span>'
    " · hover a token for its confidence and top alternatives</div>"
)


def info_markdown(rec: dict | None) -> str:
    """Header of a result column: strategy, NFE, wall time, correctness, decoded answer."""
    if not rec:
        return "*waiting*"
    if rec.get("policy") == OFF:
        return "*off*"
    parts = [f"**{html.escape(rec['label'])}**"]
    stats = f"NFE **{rec['nfe']}** / {rec['gen_length']} · {rec['wall_s'] * 1000:.0f} ms"
    if rec.get("done"):
        stats += f" · {len(rec['committed_per_step'])} steps"
    else:
        stats += f" · step {len(rec['committed_per_step'])} …"
    parts.append(stats)
    if rec.get("correct") is True:
        parts.append("✓ **correct**")
    elif rec.get("correct") is False:
        parts.append("✗ **wrong**")
    if rec.get("done") and rec.get("text") is not None:
        parts.append(f"answer: `{rec['text'].replace('`', chr(39)) or '(empty)'}`")
    return "  \n".join(parts)


def new_record(policy: str, label: str, params: dict, gen_length: int, block_length: int, seed: int,
               mask_id: int) -> dict:
    """An empty run record for one strategy column (all L positions masked). `alts[pos]` is the
    display text of the top alternatives when `pos` was committed; `committed_per_step` the number
    of positions committed at each step (its length is the number of steps)."""
    L = gen_length
    return {
        "policy": policy, "params": params, "label": label, "gen_length": L, "block_length": block_length,
        "seed": seed, "tokens": [""] * L, "token_ids": [mask_id] * L, "kinds": ["masked"] * L,
        "order": [-1] * L, "conf": [0.0] * L, "alts": [""] * L, "committed_per_step": [],
        "nfe": 0, "wall_s": 0.0, "done": False, "text": None, "correct": None,
    }


def add_step(rec: dict, step, token_strings, eos_ids, pad_id: int) -> None:
    """Fold one sampler `Step` (batch row 0) into a record: which positions were committed, to
    what, with what confidence and which top alternatives at that moment. `token_strings` maps
    ids to display strings (`DLLM.token_strings`)."""
    pos = step.committed[0].nonzero().flatten().tolist()
    ids = step.tokens[0, pos].tolist()
    probs = step.token_prob[0, pos].tolist()
    alt_ids = step.top_ids[0, pos].tolist() if step.top_ids is not None else [[] for _ in pos]
    alt_probs = step.top_probs[0, pos].tolist() if step.top_probs is not None else [[] for _ in pos]
    eos = set(eos_ids)
    for p, tok, s, c, a_ids, a_probs in zip(pos, ids, token_strings(ids), probs, alt_ids, alt_probs):
        rec["order"][p] = step.index
        rec["token_ids"][p] = tok
        rec["tokens"][p] = s
        rec["kinds"][p] = "eos" if tok in eos else ("pad" if tok == pad_id else "tok")
        rec["conf"][p] = round(c, 4)
        rec["alts"][p] = "  ".join(f"{display_token(t, 'tok')} {q:.2f}" for t, q in zip(token_strings(a_ids), a_probs))
    rec["committed_per_step"].append(len(pos))
    rec["nfe"] = int(step.nfe[0])


def _running(records: list[dict]) -> list[tuple[int, dict]]:
    return [(i, r) for i, r in enumerate(records) if r and r.get("policy") != OFF and r["committed_per_step"]]


def decode_order_figure(records: list[dict]) -> go.Figure:
    """Position (x) against the step at which it was unmasked (y), one panel per column; the
    marker colour is the commit-time confidence and hovering shows token and alternatives."""
    shown = _running(records)
    rows = max(1, len(shown))
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=[f"{i + 1} · {r['label']}" for i, r in shown] or ["no run yet"])
    for row, (i, rec) in enumerate(shown, start=1):
        pos = [p for p, o in enumerate(rec["order"]) if o >= 0]
        hover = [
            f"<b>{html.escape(display_token(rec['tokens'][p], rec['kinds'][p]))}</b><br>"
            + html.escape(tooltip(rec, p)).replace("\n", "<br>")
            for p in pos
        ]
        fig.add_trace(go.Scatter(
            x=pos, y=[rec["order"][p] for p in pos], mode="markers", name=rec["label"],
            marker=dict(symbol="square", size=9, color=[rec["conf"][p] for p in pos], cmin=0, cmax=1,
                        colorscale="Blues", line=dict(width=1, color=COLUMN_COLORS[i % 4]),
                        colorbar=dict(title="p", len=0.6) if row == 1 else None, showscale=row == 1),
            hovertext=hover, hoverinfo="text", showlegend=False,
        ), row=row, col=1)
        fig.update_yaxes(title_text="step", autorange="reversed", row=row, col=1)
    fig.update_xaxes(title_text="position", row=rows, col=1)
    fig.update_layout(title="Decode order (when each position was unmasked)", height=170 + 150 * rows,
                      margin=dict(l=50, r=20, t=70, b=40), template="plotly_white")
    return fig


def tokens_per_step_figure(records: list[dict]) -> go.Figure:
    """Tokens committed at each step, one line per column."""
    fig = go.Figure()
    for i, rec in _running(records):
        counts = rec["committed_per_step"]
        fig.add_trace(go.Scatter(
            x=list(range(len(counts))), y=counts, mode="lines+markers", line_shape="hv",
            name=f"{i + 1} · {rec['label']}", line=dict(color=COLUMN_COLORS[i % 4]),
        ))
    fig.update_layout(title="Tokens committed per step", xaxis_title="step", yaxis_title="tokens",
                      height=380, margin=dict(l=50, r=20, t=60, b=40), template="plotly_white",
                      legend=dict(orientation="h", yanchor="top", y=-0.22, x=0))
    return fig


def result_json(records: list[dict]) -> list[dict]:
    """The API result: one entry per column (the records minus per-position hover details)."""
    keep = ("policy", "params", "label", "text", "correct", "nfe", "wall_s", "gen_length", "block_length",
            "seed", "tokens", "token_ids", "order", "conf", "done", "unknown_words")
    out = []
    for rec in records:
        if rec.get("policy") == OFF:
            out.append({"policy": OFF})
            continue
        item = {k: rec.get(k) for k in keep}
        item["committed_per_step"] = list(rec["committed_per_step"])
        item["steps"] = len(rec["committed_per_step"])
        out.append(item)
    return out


def out_of_memory_message(gen_length: int, columns: int) -> str:
    """What a visitor reads when a run did not fit in the device's memory."""
    fewer = f" or fewer strategy columns (this run had {columns})" if columns > 1 else ""
    return (f"The model ran out of memory on this run (generation length {gen_length}). "
            f"Try a shorter generation length{fewer}; the page keeps working.")


def error_markdown(message: str | None) -> str:
    return f"⚠ **{message}**" if message else ""


def policies_markdown(policies: list[dict], folder: str, model_card: dict | None) -> str:
    """The 'Policies' tab: shipped learned-policy checkpoints with their cards and how to retrain."""
    lines = ["## Shipped learned policies", f"Folder: `{folder}`", ""]
    if not policies:
        lines.append("*No learned policy checkpoints found.* Each policy lives in its own folder with "
                     "`config.json`, `model.safetensors` and `card.json`; the card's `train_command` "
                     "says how it was trained.")
    else:
        lines += ["| name | task | gen / block | alpha | tau | val accuracy | val NFE | train time |",
                  "|---|---|---|---|---|---|---|---|"]
        for p in policies:
            c = p.get("card", {})
            lines.append(
                f"| **{p['name']}** | {c.get('task', '?')} | {c.get('gen_length', '?')} / {c.get('block_length', '?')} "
                f"| {_fmt(c.get('alpha'))} | {_fmt(c.get('temperature'))} | {_fmt(c.get('val_accuracy'))} "
                f"| {_fmt(c.get('val_nfe'))} | {_fmt(c.get('wall_minutes'))} min |"
            )
        for p in policies:
            lines += ["", f"### {p['name']}"]
            if p.get("error"):
                lines.append(f"⚠ could not be loaded: {p['error']}")
            cmd = p.get("card", {}).get("train_command")
            if cmd:
                lines += ["Retrain it with:", "```bash", cmd, "```"]
            extra = {k: v for k, v in p.get("card", {}).items() if k not in ("train_command",)}
            if extra:
                lines += ["<details><summary>card.json</summary>", "", "```json",
                          _json(extra), "```", "</details>"]
    if model_card:
        lines += ["", "## The dLLM", f"**{model_card.get('name', 'model')}**: "
                  + ", ".join(f"{k} = {model_card[k]}" for k in ("architecture", "parameters", "steps", "wall_minutes")
                              if k in model_card)]
        if model_card.get("train_command"):
            lines += ["```bash", model_card["train_command"], "```"]
    return "\n".join(lines)


def _fmt(v) -> str:
    if v is None:
        return "?"
    if isinstance(v, float):
        return f"{v:.3g}" if math.isfinite(v) else str(v)
    return str(v)


def _json(obj) -> str:
    return json.dumps(obj, indent=2, default=str)
