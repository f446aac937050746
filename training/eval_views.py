"""Views of measured points: aggregation over seeds, markdown tables and plotly figures; and of
RL validation records (training curves).

Pure functions of (Request, point) pairs; nothing here runs a model or reads a file. The runner
and the point store live in `training.evaluate`, the report layout in `training.report`; neither
is imported here: a figure is given what it draws (the rows, and the rule for each line's path).
"""

from __future__ import annotations

import json
import math
import statistics
from typing import Callable, Iterable, Sequence

MISSING = "–"


def aggregate(pairs: Sequence[tuple[object, dict]]) -> list[dict]:
    """(Request, point) pairs -> one row per (figure line, params, setting), seeds pooled.

    Accuracy / NFE are the mean over seeds, with the sample std over seeds (0 for one seed).
    Rows keep the order in which their first request appears.
    """
    groups: dict[str, list] = {}
    for req, point in pairs:
        s, v = req.setting, req.variant
        key = json.dumps([v.method, v.line, v.params, s.task, s.model, s.split, s.block_length,
                          s.gen_length, s.n, s.temperature], sort_keys=True)
        groups.setdefault(key, []).append((req, point))
    rows = []
    for members in groups.values():
        req, _ = members[0]
        s, v = req.setting, req.variant
        pts = [p for _, p in members]
        acc = [p["accuracy"] for p in pts]
        nfe = [p["mean_nfe"] for p in pts]
        mean_nfe = statistics.fmean(nfe)
        rows.append({
            "method": v.method, "line": v.line, "policy": v.policy, "params": v.describe(),
            "checkpoint": v.checkpoint, "setting": s.describe(), "task": s.task, "model": s.model,
            "block_length": s.block_length, "gen_length": s.gen_length, "num_blocks": s.num_blocks,
            "n": s.n, "seeds": len(pts), "accuracy": statistics.fmean(acc), "accuracy_std": _std(acc),
            "accuracy_ci95": ci95(statistics.fmean(acc), s.n, _std(acc), len(pts)),
            "mean_nfe": mean_nfe, "nfe_std": _std(nfe),
            "tokens_per_nfe": s.gen_length / mean_nfe if mean_nfe else None,
            "ms_per_problem": 1000 * statistics.fmean(p["wall_seconds"] / p["n"] for p in pts),
            "policy_time_share": _mean_or_none(p.get("policy_time_share") for p in pts),
            "forward_passes": statistics.fmean(p["forward_passes"] for p in pts),
            # dLLM calls per batch: a batch runs until its slowest sample finishes each block
            "batch_passes": statistics.fmean(p["forward_passes"] / math.ceil(p["n"] / p["batch_size"]) for p in pts),
            # the oracle's reference decode (training/oracle.py); None for every other method
            "reference_accuracy": _mean_or_none(p.get("reference_accuracy") for p in pts),
            "oracle_agreement": _mean_or_none(p.get("oracle_agreement") for p in pts),
        })
    return rows


def ci95(accuracy: float, n: int, seed_std: float = 0.0, seeds: int = 1) -> float:
    """Half-width of a 95% normal-approximation interval for an accuracy over n problems.

    Problem sampling gives the binomial variance p(1 - p) / n; with several seeds on the same
    problems their spread adds seed_std^2 / seeds (conservative: the two are not independent).
    """
    if n < 1 or seeds < 1:
        raise ValueError(f"n={n}, seeds={seeds}: must be >= 1")
    return 1.96 * math.sqrt(accuracy * (1 - accuracy) / n + seed_std ** 2 / seeds)


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _mean_or_none(values) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.fmean(vals) if vals else None


def pct(x: float | None, std: float | None = None) -> str:
    if x is None:
        return MISSING
    return f"{100 * x:.1f} ± {100 * std:.1f}" if std else f"{100 * x:.1f}"


def num(x: float | None, digits: int = 1) -> str:
    return MISSING if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


COLUMNS: dict[str, tuple[str, Callable[[dict], str]]] = {
    "group": ("", lambda r: r.get("group", MISSING)),
    "line": ("method", lambda r: r["line"]),
    "params": ("params", lambda r: r["params"] or MISSING),
    "setting": ("setting", lambda r: r["setting"]),
    "block_length": ("BL", lambda r: str(r["block_length"])),
    "seeds": ("seeds", lambda r: str(r["seeds"])),
    "accuracy": ("accuracy %", lambda r: pct(r["accuracy"], r["accuracy_std"])),
    "ci95": ("95% CI", lambda r: f"± {100 * r['accuracy_ci95']:.1f}"),
    "n": ("n", lambda r: str(r["n"])),
    "mean_nfe": ("NFE", lambda r: num(r["mean_nfe"]) + (f" ± {r['nfe_std']:.1f}" if r["nfe_std"] else "")),
    "tokens_per_nfe": ("tokens / NFE", lambda r: num(r["tokens_per_nfe"], 2)),
    "ms_per_problem": ("ms / problem", lambda r: num(r["ms_per_problem"])),
    "policy_time_share": ("policy time %", lambda r: pct(r["policy_time_share"])),
    "batch_passes": ("dLLM calls / batch", lambda r: num(r["batch_passes"])),
    "collapsed": ("collapsed", lambda r: "yes" if r.get("collapsed") else "no"),
}
DEFAULT_COLUMNS = ("line", "params", "setting", "seeds", "accuracy", "mean_nfe", "tokens_per_nfe", "ms_per_problem")


def markdown_table(rows: Sequence[dict], columns: Sequence[str] = DEFAULT_COLUMNS) -> str:
    """A GitHub markdown table of aggregated rows; `columns` are keys of COLUMNS."""
    if not rows:
        return "_no points_"
    heads = [COLUMNS[c][0] for c in columns]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for r in rows:
        lines.append("| " + " | ".join(COLUMNS[c][1](r).replace("|", "\\|") for c in columns) + " |")
    return "\n".join(lines)


def frontier_figure(rows: Sequence[dict], title: str, x: str = "mean_nfe", y: str = "accuracy",
                    panel: Callable[[dict], str] = lambda r: r["setting"],
                    path: Callable[[Iterable[tuple[float, float]]], list] = sorted, log_x: bool = True):
    """One panel per `panel(row)`, one colour per figure line. Every point is a marker (with its
    seed std as error bars); the line joins `path((x, y) of the line's points)`: all of them in
    x order by default, or the Pareto frontier with `path=training.evaluate.pareto_frontier`."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative
    from plotly.subplots import make_subplots

    panels = list(dict.fromkeys(panel(r) for r in rows)) or ["(no points)"]
    lines = list(dict.fromkeys(r["line"] for r in rows))
    colours = {ln: qualitative.Plotly[i % len(qualitative.Plotly)] for i, ln in enumerate(lines)}
    ncols = min(3, len(panels))
    fig = make_subplots(rows=math.ceil(len(panels) / ncols), cols=ncols, subplot_titles=panels)
    scale = 100 if y == "accuracy" else 1
    shown = set()
    for i, name in enumerate(panels):
        at = {"row": i // ncols + 1, "col": i % ncols + 1}
        for ln in lines:
            mine = [r for r in rows if panel(r) == name and r["line"] == ln and r[x] is not None]
            if not mine:
                continue
            err = [scale * r.get(f"{y}_std", 0.0) for r in mine] if f"{y}_std" in mine[0] else None
            # the oracle is the limit, not a policy: a large black star
            limit = mine[0].get("policy") == "oracle"
            marker = {"color": "black", "size": 16, "symbol": "star"} if limit else {"color": colours[ln], "size": 8}
            fig.add_trace(go.Scatter(
                x=[r[x] for r in mine], y=[scale * r[y] for r in mine], mode="markers", name=ln, legendgroup=ln,
                marker=marker, showlegend=ln not in shown,
                error_y={"type": "data", "array": err, "visible": True} if err and any(err) else None,
                error_x={"type": "data", "array": [r["nfe_std"] for r in mine], "visible": True}
                if x == "mean_nfe" and any(r["nfe_std"] for r in mine) else None,
                text=[f"{r['params']}<br>seeds={r['seeds']} n={r['n']}" for r in mine],
                hovertemplate="%{text}<br>x=%{x:.2f} y=%{y:.2f}<extra>" + ln + "</extra>"), **at)
            shown.add(ln)
            joined = path((r[x], r[y]) for r in mine)
            if len(joined) > 1:
                fig.add_trace(go.Scatter(x=[p[0] for p in joined], y=[scale * p[1] for p in joined], mode="lines",
                                         line={"color": colours[ln]}, legendgroup=ln, showlegend=False,
                                         hoverinfo="skip"), **at)
        xs = sorted({r[x] for r in rows if panel(r) == name and r[x] is not None})
        # log axes label only powers of two (NFE) or the values used (block lengths)
        ticks = xs if x == "block_length" else [2 ** i for i in range(11) if xs and xs[0] / 2 <= 2 ** i <= xs[-1] * 2]
        fig.update_xaxes(title_text=_AXIS.get(x, x), type="log" if log_x else None,
                         tickvals=ticks if log_x else None, **at)
        fig.update_yaxes(title_text=_AXIS.get(y, y), rangemode="tozero", **at)
    fig.update_layout(title=title, height=420 * math.ceil(len(panels) / ncols), template="plotly_white")
    return fig


_AXIS = {"mean_nfe": "mean NFE", "accuracy": "accuracy (%)", "block_length": "block length",
         "ms_per_problem": "wall ms / problem", "tokens_per_nfe": "tokens / NFE"}


# -- RL training curves (validation records of policy checkpoints) ------------------------------
def training_table(rows) -> str:
    """Markdown table of validation records: per checkpoint the first, the first in each span of 20
    rounds, the best and the last round."""
    if not rows:
        return "_no validation logs_"
    lines = ["| checkpoint | round | val reward | val accuracy % | val NFE | minutes |", "|---|---|---|---|---|---|"]
    for line in dict.fromkeys(r["line"] for r in rows):
        mine = sorted((r for r in rows if r["line"] == line), key=lambda r: r["step"])
        best = max(mine, key=lambda r: r["val_reward"])
        for prev, r in zip([None] + mine, mine):
            new_span = prev is None or r["step"] // 20 != prev["step"] // 20
            if not new_span and r is not best and r is not mine[-1]:
                continue
            mark = " (best)" if r is best else ""
            lines.append(f"| {line} | {r['step']}{mark} | {r['val_reward']:.3f} | {100 * r['val_accuracy']:.1f} | "
                         f"{r['val_nfe']:.1f} | {r['wall_min'] or 0:.1f} |")
    return "\n".join(lines)


def training_figure(rows, title: str):
    """Validation reward, accuracy and NFE against GRPO round, one line per checkpoint."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    keys = (("val_reward", "validation reward"), ("val_accuracy", "validation accuracy"), ("val_nfe", "validation NFE"))
    fig = make_subplots(rows=1, cols=3, subplot_titles=[k[1] for k in keys])
    for i, line in enumerate(dict.fromkeys(r["line"] for r in rows)):
        mine = sorted((r for r in rows if r["line"] == line), key=lambda r: r["step"])
        for col, (key, _) in enumerate(keys, 1):
            fig.add_trace(go.Scatter(x=[r["step"] for r in mine], y=[r[key] for r in mine], mode="lines+markers",
                                     name=line, legendgroup=line, showlegend=col == 1,
                                     line={"color": f"hsl({(i * 67) % 360},65%,45%)"}), row=1, col=col)
            fig.update_xaxes(title_text="GRPO round", row=1, col=col)
    fig.update_layout(title=title, height=420)
    return fig
