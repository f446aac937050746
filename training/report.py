"""Regenerate the results report: run every experiment of a grid TOML, then write RESULTS.md (the
claims, the headline frontiers, what was tried), RESULTS-appendix.md (every section in full),
results.json (every point) and one figure per section.

    python -m training.report                 # training/eval_grids/report.toml -> docs/
    python -m training.report --render_only   # measure nothing: render docs/ from docs/results.json
    python -m training.report --quick         # quick.toml (about a minute) -> runs/report-quick/
    python -m training.report --dry_run       # plan and time estimate only

The grid (sections, methods, sweeps, n, seeds) is data: see the comments in report.toml. This
module turns sections into requests for `training.evaluate` and renders what comes back; the
reading sentences are templates filled with measured numbers, and each section keeps a marked
block for a human interpretation that survives regeneration.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import re
import statistics
import subprocess
import time
import tomllib
from dataclasses import dataclass, field

from .eval_views import aggregate, frontier_figure, markdown_table, training_figure, training_table
from .evaluate import (Method, Request, Setting, calibrate, estimate_seconds, expand_lengths, load_points,
                       make_requests, matched_nfe_gap, model_available, pareto_frontier, read_card, run_requests)

GRIDS = os.path.join(os.path.dirname(__file__), "eval_grids")
VIEWS = ("frontier", "block_length", "collapse", "wallclock", "training")
HUMAN = re.compile(r"<!-- human:(\w+) -->\n(.*?)<!-- /human:\1 -->", re.S)
CLAIMS = "claims"  # id of the human block with the verdict table (no section may take it)
TRIED = "tried"  # id of the human block saying what was tried and what was not
APPENDIX = "RESULTS-appendix.md"  # beside RESULTS.md: every section's reading, notes and full table
HUMAN_PLACEHOLDER = "> **Interpretation:** _to be written by a person (kept when the report is regenerated)._\n"


@dataclass(frozen=True)
class Section:
    """One experiment of the report: settings (tasks x models x lengths) x methods x seeds."""

    id: str
    title: str
    methods: tuple  # method ids, or {"method": id, ...overrides} (see `resolve_entry`)
    view: str = "frontier"
    description: str = ""
    tasks: tuple[str, ...] = ("word_problems",)
    models: tuple[str, ...] = ()  # empty: the default model
    block_lengths: tuple = ("task",)  # ints, "task" (the task's own) or "full" (= gen length)
    gen_lengths: tuple = ("task",)
    n: int | None = None
    seeds: tuple[int, ...] | None = None
    split: str | None = None
    temperature: float | None = None
    compare: tuple = (("learned", "heuristics"),)  # frontier view: pairs of method ids / groups
    collapse_tolerance: float = 0.1  # collapse view: mean NFE <= (1 + tol) x number of blocks
    summary: bool = False  # frontier view: its frontiers are also drawn in RESULTS.md

    def __post_init__(self):
        if not re.fullmatch(r"\w+", self.id) or self.id in (CLAIMS, TRIED):
            raise ValueError(f"section id {self.id!r}: letters, digits and _ only (used in file names), "
                             f"and not {CLAIMS!r} or {TRIED!r} (the verdict and what-was-tried blocks)")
        if self.view not in VIEWS:
            raise ValueError(f"section {self.id}: view={self.view!r}, expected one of {VIEWS}")
        if not self.methods:
            raise ValueError(f"section {self.id}: methods is empty")


@dataclass(frozen=True)
class Grid:
    defaults: dict
    methods: dict[str, Method]
    sections: tuple[Section, ...]
    path: str


# keys of a section's {"method": id, ...} entry besides the policy's own parameters
ENTRY_KEYS = {"method", "id", "label", "match", "per_checkpoint", "seeds"}


def resolve_entry(methods: dict[str, Method], entry, where: str = "") -> Method:
    """A section's method: an id of `methods`, or {"method": id, ...} with overrides for that
    section only. A policy parameter with a list sweeps those values, with one value fixes it
    (the label then gains ", name=value"); `match` fields are added to or replace the method's;
    `label`, `per_checkpoint` and `seeds` replace the method's; `id` names the entry (default: the
    method's id). Raises ValueError naming `where` for an unknown method or a bad override."""
    if isinstance(entry, str):
        if entry not in methods:
            raise ValueError(f"{where}: undefined method {entry!r}")
        return methods[entry]
    if not isinstance(entry, dict) or not isinstance(entry.get("method"), str):
        raise ValueError(f"{where}: a method entry is an id or {{method = id, ...}}, got {entry!r}")
    base = methods.get(entry["method"])
    if base is None:
        raise ValueError(f"{where}: undefined method {entry['method']!r}")
    params, sweep, fixed = dict(base.params), dict(base.sweep), {}
    for key, value in entry.items():
        if key in ENTRY_KEYS:
            continue
        if isinstance(value, (list, tuple)):
            sweep[key] = list(value)
            params.pop(key, None)
        else:
            params[key] = fixed[key] = value
            sweep.pop(key, None)
    if not isinstance(entry.get("match", {}), dict):
        raise ValueError(f"{where}: match={entry['match']!r} must be a table of card fields")
    label = entry.get("label") or (base.label or base.id) + "".join(f", {k}={v}" for k, v in sorted(fixed.items()))
    try:
        return dataclasses.replace(
            base, id=entry.get("id", base.id), label=label, params=params, sweep=sweep,
            match={**base.match, **entry.get("match", {})},
            per_checkpoint=entry.get("per_checkpoint", base.per_checkpoint), seeds=entry.get("seeds", base.seeds))
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


def section_methods(grid: Grid, sec: Section) -> dict[str, Method]:
    """The section's methods by entry id, its overrides applied (ids unique within the section)."""
    out = {}
    for entry in sec.methods:
        m = resolve_entry(grid.methods, entry, f"{grid.path}: section {sec.id}")
        if m.id in out:
            raise ValueError(f"{grid.path}: section {sec.id} lists {m.id!r} twice; give one entry its own id")
        out[m.id] = m
    return out


DEFAULT_KEYS = {"model", "policies_dir", "split", "n", "seeds", "batch_size", "temperature"}


def load_grid(path: str) -> Grid:
    """Read and validate a grid TOML ([defaults], [methods.<id>], [[sections]])."""
    with open(path, "rb") as f:
        data = tomllib.load(f)
    _only(data, {"defaults", "methods", "sections"}, path)
    defaults = {"model": "checkpoints/tiny-dllm", "policies_dir": "checkpoints/policies", "split": "test",
                "n": 500, "seeds": [0, 1, 2], "batch_size": 64, "temperature": 0.0}
    _only(data.get("defaults", {}), DEFAULT_KEYS, f"{path} [defaults]")
    defaults.update(data.get("defaults", {}))
    methods = {}
    for mid, spec in data.get("methods", {}).items():
        _only(spec, {f for f in Method.__dataclass_fields__} - {"id"}, f"{path} [methods.{mid}]")
        methods[mid] = Method(id=mid, **spec)
    sections = []
    for spec in data.get("sections", []):
        _only(spec, set(Section.__dataclass_fields__), f"{path} [[sections]] {spec.get('id', '?')}")
        spec = {k: tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v
                for k, v in spec.items()}
        sec = Section(**spec)
        mine = section_methods(Grid(defaults, methods, (), path), sec)
        unknown = [m for pair in sec.compare for m in pair if m not in mine and m not in ("learned", "heuristics")]
        if unknown:
            raise ValueError(f"{path}: section {sec.id} compares methods it does not list: {unknown}")
        if any(len(pair) != 2 for pair in sec.compare):
            raise ValueError(f"{path}: section {sec.id}: compare entries must be [A, B] pairs, got {sec.compare}")
        from .tasks import TASKS

        if set(sec.tasks) - set(TASKS):
            raise ValueError(f"{path}: section {sec.id}: unknown tasks {sorted(set(sec.tasks) - set(TASKS))}")
        sections.append(sec)
    ids = [s.id for s in sections]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: duplicate section ids in {ids}")
    return Grid(defaults, methods, tuple(sections), path)


def _only(d: dict, allowed: set, where: str):
    bad = set(d) - set(allowed)
    if bad:
        raise ValueError(f"{where}: unknown keys {sorted(bad)}; allowed: {sorted(allowed)}")


def plan_section(grid: Grid, sec: Section, model: str | None = None, policies_dir: str | None = None):
    """Requests of one section and the notes on what was skipped. `model` replaces the default
    model (sections that name their own models keep them). A training section measures nothing:
    it reads its checkpoints' validation logs (`training_rows`)."""
    d = grid.defaults
    methods = section_methods(grid, sec)
    if sec.view == "training":
        notes = [n for m in methods.values() for n in m.variants(policies_dir or d["policies_dir"])[1]]
        return [], notes
    default_model = model or d["model"]
    notes, settings = [], []
    for m in sec.models or (default_model,):
        if not model_available(m):
            notes.append(f"model {m!r} not found (no config.json + weights): its settings were skipped.")
            continue
        for task in sec.tasks:
            try:
                pairs = expand_lengths(sec.block_lengths, sec.gen_lengths, task)
            except ValueError as err:
                notes.append(f"{task}: {err}; skipped.")
                continue
            for bl, gl in pairs:
                settings.append(Setting(task, m, bl, gl, sec.split or d["split"], sec.n or d["n"],
                                        sec.temperature if sec.temperature is not None else d["temperature"]))
    variants = []
    for m in methods.values():
        vs, ns = m.variants(policies_dir or d["policies_dir"])
        variants += vs
        notes += ns
    seeds = list(sec.seeds or d["seeds"])
    requests = make_requests(settings, variants, seeds, {k: m.seeds for k, m in methods.items()})
    return requests, notes


# -- reading sentences (templates filled with numbers) -----------------------------------------
def _group(rows, name):
    if name in ("learned", "oracle"):
        return [r for r in rows if r["policy"] == name]
    if name == "heuristics":  # the oracle is a reference point, never a heuristic
        return [r for r in rows if r["policy"] not in ("learned", "oracle")]
    return [r for r in rows if r["method"] == name]


def _best(rows):
    return max(rows, key=lambda r: (r["accuracy"], -r["mean_nfe"]))


def _point(r):
    return f"{100 * r['accuracy']:.1f}% (95% CI ±{100 * r['accuracy_ci95']:.1f}) at {r['mean_nfe']:.1f} NFE ({r['line']}, {r['params'] or 'default'})"


KEEP = 0.97  # "keeps the accuracy": at least this share of the one-token-per-step accuracy (issue 21 target)


def read_oracle(mine: list[dict], setting: str) -> list[str]:
    """The limit of one setting: the oracle's point, and the cheapest heuristic / learned point that
    keeps KEEP x the one-token-per-step accuracy, in multiples of the oracle's NFE."""
    out = []
    for o in _group(mine, "oracle"):
        ref = o.get("reference_accuracy")
        text = (f"{setting}: the oracle (the limit; not a policy, it needs the one-token-per-step answer first) "
                f"reaches {_point(o)}")
        if ref is None:
            out.append(text + ".")
            continue
        agree = o.get("oracle_agreement")
        text += (f", reproducing the one-token-per-step tokens on {100 * agree:.1f}% of problems (that decode: "
                 f"{100 * ref:.1f}%)." if agree is not None else ".")
        for group, label in (("heuristics", "heuristic"), ("learned", "learned")):
            ok = [r for r in _group(mine, group) if r["accuracy"] >= KEEP * ref]
            if not ok:
                text += f" No {label} point keeps {100 * KEEP:.0f}% of it (>= {100 * KEEP * ref:.1f}%)."
                continue
            c = min(ok, key=lambda r: r["mean_nfe"])
            text += (f" Cheapest {label} point keeping {100 * KEEP:.0f}% of it: {_point(c)}, "
                     f"{c['mean_nfe'] / o['mean_nfe']:.2f}x the oracle's NFE.")
        out.append(text)
    return out


MATCH_NFE, MATCH_ACCURACY = 0.5, 0.01  # issue 21: a heuristic point is matched by a learned point with at most
# 0.5 more NFE and at most 1 point less accuracy


def unmatched_heuristics(rows: list[dict]) -> tuple[int, list[dict]]:
    """(number of heuristic points, those no learned point matches) among `rows` of one setting."""
    learned = _group(rows, "learned")
    heur = _group(rows, "heuristics")
    missed = [h for h in heur if not any(r["mean_nfe"] <= h["mean_nfe"] + MATCH_NFE + 1e-9
                                         and r["accuracy"] >= h["accuracy"] - MATCH_ACCURACY - 1e-9 for r in learned)]
    return len(heur), missed


def read_matching(mine: list[dict], setting: str) -> list[str]:
    if not _group(mine, "learned") or not _group(mine, "heuristics"):
        return []
    total, missed = unmatched_heuristics(mine)
    text = (f"{setting}: {total - len(missed)} of {total} heuristic points are matched by a learned point (at most "
            f"{MATCH_NFE} more NFE and {100 * MATCH_ACCURACY:.0f} point less accuracy)")
    if missed:
        text += "; not matched: " + "; ".join(f"{r['line']} {r['params'] or 'default'} ({100 * r['accuracy']:.1f}% at "
                                             f"{r['mean_nfe']:.1f} NFE)" for r in sorted(missed, key=lambda r: r["mean_nfe"]))
    return [text + "."]


def read_frontier(rows, sec: Section, names: dict[str, str]) -> list[str]:
    out = []
    for setting in dict.fromkeys(r["setting"] for r in rows):
        mine = [r for r in rows if r["setting"] == setting]
        out += read_oracle(mine, setting)
        out += read_matching(mine, setting)
        for a, b in sec.compare:
            ra, rb = _group(mine, a), _group(mine, b)
            la, lb = names.get(a, a), names.get(b, b)
            if not ra or not rb:
                missing = la if not ra else lb
                if ra or rb:
                    out.append(f"{setting}: no {missing} points (see notes); best {la if ra else lb} "
                               f"{_point(_best(ra or rb))}.")
                continue
            fa = pareto_frontier((r["mean_nfe"], r["accuracy"]) for r in ra)
            fb = pareto_frontier((r["mean_nfe"], r["accuracy"]) for r in rb)
            text = f"{setting}: best {la} {_point(_best(ra))}; best {lb} {_point(_best(rb))}."
            gaps = [g for *_, g in matched_nfe_gap(fa, fb)]
            if gaps:
                text += (f" Matched-NFE gap ({la} minus {lb}, over {len(gaps)} frontier point(s)): mean "
                         f"{100 * statistics.fmean(gaps):+.1f} points, range {100 * min(gaps):+.1f} to "
                         f"{100 * max(gaps):+.1f}.")
            else:
                text += f" Every {la} frontier point is cheaper than all {lb} points: no matched-NFE comparison."
            cheap, at = fa[0], _step(fb, fa[0][0])
            text += (f" Cheapest {la} frontier point: {100 * cheap[1]:.1f}% at {cheap[0]:.1f} NFE"
                     + (f" vs {100 * at:.1f}% for {lb} within the same budget." if at is not None else "."))
            out.append(text)
    return out


def _step(frontier, nfe):
    from .evaluate import step_accuracy

    return step_accuracy(frontier, nfe)


def read_block_length(rows, sec: Section, names) -> list[str]:
    out = []
    for panel in dict.fromkeys(_no_block(r) for r in rows):
        parts = []
        for line, params in dict.fromkeys((r["line"], r["params"]) for r in rows if _no_block(r) == panel):
            mine = sorted((r for r in rows if _no_block(r) == panel and (r["line"], r["params"]) == (line, params)),
                          key=lambda r: r["block_length"])
            lo, hi = mine[0], mine[-1]
            name = line if params in line or not params else f"{line} ({params})"
            parts.append(f"{name} {100 * lo['accuracy']:.1f}% → {100 * hi['accuracy']:.1f}% "
                         f"(NFE {lo['mean_nfe']:.1f} → {hi['mean_nfe']:.1f})")
        bls = sorted({r["block_length"] for r in rows if _no_block(r) == panel})
        out.append(f"{panel}, block length {bls[0]} → {bls[-1]}: " + "; ".join(parts) + ".")
    return out


def _no_block(r):
    return f"{r['task']} | {os.path.basename(os.path.normpath(r['model']))} | L={r['gen_length']}"


def mark_collapsed(rows, tolerance: float):
    for r in rows:
        r["collapsed"] = r["mean_nfe"] <= (1 + tolerance) * r["num_blocks"]


def read_collapse(rows, sec: Section, names) -> list[str]:
    out = []
    for mid in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == mid]
        coll = [r for r in mine if r["collapsed"]]
        text = (f"{names.get(mid, mid)}: {len(coll)} of {len(mine)} point(s) collapsed (mean NFE within "
                f"{100 * sec.collapse_tolerance:.0f}% of the number of blocks); accuracy "
                f"{100 * min(r['accuracy'] for r in mine):.1f}–{100 * max(r['accuracy'] for r in mine):.1f}%, "
                f"tokens per NFE {min(r['tokens_per_nfe'] for r in mine):.2f}–{max(r['tokens_per_nfe'] for r in mine):.2f}")
        ok = [r for r in mine if not r["collapsed"]]
        out.append(text + (f"; best non-collapsed {_point(_best(ok))}." if ok else "."))
    return out


def read_wallclock(rows, sec: Section, names) -> list[str]:
    out = []
    xs, ys = [r["mean_nfe"] for r in rows], [r["ms_per_problem"] for r in rows]
    if len(rows) > 2 and len(set(xs)) > 1 and len(set(ys)) > 1:
        slope = statistics.linear_regression(xs, ys).slope
        out.append(f"Over {len(rows)} points, wall time per problem follows mean NFE with Pearson r = "
                   f"{statistics.correlation(xs, ys):.2f} ({slope:.2f} ms per extra NFE)"
                   + (f" and dLLM calls per batch with r = {statistics.correlation(bs, ys):.2f}."
                      if len(set(bs := [r["batch_passes"] for r in rows])) > 1 else "."))
    for group, name in (("learned", "Learned policies"), ("heuristics", "Heuristics")):
        shares = [r["policy_time_share"] for r in _group(rows, group) if r["policy_time_share"] is not None]
        if shares:
            out.append(f"{name}: the selection step itself takes {100 * statistics.fmean(shares):.1f}% of wall "
                       f"time on average (max {100 * max(shares):.1f}%).")
    return out


def training_rows(grid: Grid, sec: Section, policies_dir: str | None = None) -> list[dict]:
    """Validation records (every `eval_every` rounds) of the section's learned checkpoints, read
    from the metrics.jsonl that training/train_policy.py writes next to the weights."""
    rows, seen = [], set()
    for mid, m in section_methods(grid, sec).items():
        for v in m.variants(policies_dir or grid.defaults["policies_dir"])[0]:
            path = v.params.get("checkpoint")
            if not path or path in seen or not os.path.exists(os.path.join(path, "metrics.jsonl")):
                continue
            seen.add(path)
            parent, offset = _continued_from(path)
            with open(os.path.join(path, "metrics.jsonl")) as f:
                for rec in map(json.loads, filter(str.strip, f)):
                    # "val_distilled": the oracle-distilled warm start, validated before GRPO round 1
                    for key, step in (("val_distilled", 0), ("val", rec.get("step"))):
                        if key in rec:
                            rows.append({"line": v.checkpoint, "method": mid, "step": step + offset,
                                         "continued_from": parent, "wall_min": rec.get("wall_min"),
                                         **{f"val_{k}": x for k, x in rec[key].items()}})
    return rows


def _continued_from(path: str) -> tuple[str, int]:
    """(parent folder name, its GRPO rounds) when the checkpoint's run started from another policy
    (`--init_checkpoint`), so that its rounds count on from the parent's; ("", 0) otherwise."""
    init = read_card(path).get("init_checkpoint") or ""
    parent = read_card(init) if init else {}
    if not parent:
        return "", 0
    return os.path.basename(os.path.normpath(init)), int(parent.get("total_steps") or parent.get("steps") or 0)


def read_training(rows, sec: Section, names) -> list[str]:
    out = []
    for line in dict.fromkeys(r["line"] for r in rows):
        mine = sorted((r for r in rows if r["line"] == line), key=lambda r: r["step"])
        best, last = max(mine, key=lambda r: r["val_reward"]), mine[-1]
        parent = mine[0]["continued_from"]
        start = f" (continued from {parent}: its rounds come first)" if parent else ""
        text = (f"{line}: {len(mine)} validations over {last['step']} rounds{start}; best validation reward "
                f"{best['val_reward']:.3f} at round {best['step']} ({100 * best['val_accuracy']:.1f}% at "
                f"{best['val_nfe']:.1f} NFE); last {last['val_reward']:.3f} ({100 * last['val_accuracy']:.1f}% at "
                f"{last['val_nfe']:.1f} NFE)")
        at60 = [r for r in mine if r["step"] <= 60]
        if at60 and last["step"] > 60:
            b60 = max(at60, key=lambda r: r["val_reward"])
            text += (f"; the best of the first 60 rounds was {b60['val_reward']:.3f} (round {b60['step']}), so the "
                     f"rounds after 60 changed the best reward by {best['val_reward'] - b60['val_reward']:+.3f}")
        out.append(text + ". Validation uses the problems and size set by the checkpoint's training run.")
    return out


READERS = {"frontier": read_frontier, "block_length": read_block_length, "collapse": read_collapse,
           "wallclock": read_wallclock, "training": read_training}
TABLE_COLUMNS = {
    "frontier": ("line", "params", "setting", "n", "seeds", "accuracy", "ci95", "mean_nfe", "tokens_per_nfe"),
    "block_length": ("line", "params", "setting", "block_length", "n", "seeds", "accuracy", "ci95", "mean_nfe"),
    "collapse": ("line", "params", "setting", "n", "seeds", "accuracy", "ci95", "mean_nfe", "tokens_per_nfe",
                 "collapsed"),
    "wallclock": ("line", "params", "setting", "n", "accuracy", "ci95", "mean_nfe", "batch_passes", "ms_per_problem",
                  "policy_time_share"),
}


def section_figure(rows, sec: Section):
    if sec.view == "block_length":  # one line per (method, fixed params)
        several = {r["line"] for r in rows if len({q["params"] for q in rows if q["line"] == r["line"]}) > 1}
        rows = [{**r, "line": f"{r['line']} ({r['params']})"} if r["line"] in several else r for r in rows]
        return frontier_figure(rows, sec.title, x="block_length", panel=_no_block)
    if sec.view == "wallclock":
        return frontier_figure(rows, sec.title, y="ms_per_problem")
    return frontier_figure(rows, sec.title, path=pareto_frontier)


# -- the whole report ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ReportConfig:
    quick: bool = field(default=False, metadata={"help": "run eval_grids/quick.toml (about a minute)"})
    grid: str = field(default="", metadata={"help": "grid TOML (default: eval_grids/report.toml, or quick.toml)"})
    out: str = field(default="", metadata={"help": "output folder (default: docs/, or runs/report-quick/)"})
    model: str = field(default="", metadata={"help": "replace the grid's default dLLM folder"})
    policies_dir: str = field(default="", metadata={"help": "replace the grid's policy checkpoint folder"})
    sections: list[str] = field(default_factory=list, metadata={"help": "only these section ids"})
    batch_size: int = field(default=0, metadata={"help": "problems per generate() call (0: the grid's)"})
    device: str = field(default="", metadata={"help": "cpu / cuda (default: cuda if available)"})
    threads: int = field(default=0, metadata={"help": "torch CPU threads (0 = leave default)"})
    dry_run: bool = field(default=False, metadata={"help": "print the plan and time estimate, run nothing"})
    render_only: bool = field(default=False, metadata={
        "help": "measure nothing: render the report from the points already in results.json "
                "(points not there are listed as not measured yet)"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})

    def __post_init__(self):
        if self.batch_size < 0 or self.threads < 0:
            raise ValueError(f"batch_size={self.batch_size}, threads={self.threads}: must be >= 0")

    def grid_path(self) -> str:
        return self.grid or os.path.join(GRIDS, "quick.toml" if self.quick else "report.toml")

    def out_dir(self) -> str:
        return self.out or ("runs/report-quick" if self.quick else "docs")


def run_report(cfg: ReportConfig, log=print) -> dict:
    """Plan, estimate, run, render. Returns {"sections": {...}, "seconds": wall, "estimate": s}."""
    grid = load_grid(cfg.grid_path())
    out = cfg.out_dir()
    os.makedirs(out, exist_ok=True)
    results = os.path.join(out, "results.json")
    batch = cfg.batch_size or grid.defaults["batch_size"]
    unknown = set(cfg.sections) - {s.id for s in grid.sections}
    if unknown:
        raise ValueError(f"--sections {sorted(unknown)}: not in {grid.path} ({[s.id for s in grid.sections]})")
    plans = {s.id: plan_section(grid, s, cfg.model or None, cfg.policies_dir or None) for s in grid.sections}
    # --sections limits what is measured; the report always shows every section from the store
    sections = [s for s in grid.sections if not cfg.sections or s.id in cfg.sections]
    requests = [r for s in sections for r in plans[s.id][0]]
    store = load_points(results)
    pending = set() if cfg.render_only else {r.key() for r in requests} - set(store)
    estimate, per_pass = None, 0.0
    if pending:
        model = next(r.setting.model for r in requests if r.key() in pending)
        per_pass = calibrate(model, batch, cfg.device or None)
        estimate = estimate_seconds(requests, store, batch, per_pass)
        log(f"{len(pending)} of {len({r.key() for r in requests})} points to run; "
            f"estimated {estimate / 60:.1f} min ({1000 * per_pass:.2f} ms per sample-pass at L=48, batch {batch})")
    if cfg.dry_run:
        for s in sections:
            reqs, notes = plans[s.id]
            alone = estimate_seconds(reqs, store, batch, per_pass) if pending else 0.0
            log(f"[{s.id}] {len(reqs)} points, {alone / 60:.1f} min if run alone"
                + "".join(f"\n  note: {n}" for n in notes))
        return {"sections": {}, "seconds": 0.0, "estimate": estimate}
    if pending and not cfg.threads and (cfg.device or "cpu") == "cpu" and os.getloadavg()[0] > 1.0:
        log("note: the CPU is busy (load average > 1); --threads 1 avoids thread oversubscription, "
            "which can slow each step by an order of magnitude")
    start = time.perf_counter()
    if not cfg.render_only:
        store = run_requests(requests, results, batch, cfg.device or None, progress=cfg.progress, log=log)
    seconds = time.perf_counter() - start
    rendered = {}
    for s in grid.sections:
        reqs, notes = plans[s.id]
        rendered[s.id] = render_section(grid, s, reqs, store, notes, out, cfg.policies_dir or None)
    write_markdown(os.path.join(out, "RESULTS.md"), grid, grid.sections, rendered, cfg, seconds, batch)
    log(f"wrote {out}/RESULTS.md, {out}/{APPENDIX} and {results} after measuring for {seconds / 60:.1f} min")
    return {"sections": rendered, "seconds": seconds, "estimate": estimate}


def render_section(grid: Grid, sec: Section, reqs: list[Request], store: dict, notes: list[str], out: str,
                   policies_dir: str | None = None) -> dict:
    names = {mid: (m.label or mid) for mid, m in section_methods(grid, sec).items()}
    if sec.view == "training":
        rows = training_rows(grid, sec, policies_dir)
        figure = None
        if rows:
            figure = f"fig_{sec.id}.html"
            training_figure(rows, sec.title).write_html(os.path.join(out, figure), include_plotlyjs="cdn")
        return {"rows": rows, "notes": notes, "figure": figure, "reading": read_training(rows, sec, names),
                "table": training_table(rows)}
    done = [(r, store[r.key()]) for r in reqs if r.key() in store]
    if len(done) < len(reqs):
        notes = notes + [f"{len(reqs) - len(done)} of {len(reqs)} points not measured yet "
                         "(the last run was limited with --sections or --render_only)."]
    rows = aggregate(done)
    if sec.view == "collapse":
        mark_collapsed(rows, sec.collapse_tolerance)
    names.update({"learned": "learned policies", "heuristics": "heuristics"})
    figure = None
    if rows:
        figure = f"fig_{sec.id}.html"
        section_figure(rows, sec).write_html(os.path.join(out, figure), include_plotlyjs="cdn")
    return {"rows": rows, "notes": notes, "figure": figure,
            "reading": READERS[sec.view](rows, sec, names) if rows else [],
            "table": markdown_table(rows, TABLE_COLUMNS[sec.view])}


SUMMARY_COLUMNS = ("group", "line", "params", "n", "accuracy", "ci95", "mean_nfe")


def frontier_rows(rows: list[dict]) -> list[dict]:
    """The oracle's points, then the Pareto frontier (no other point both cheaper and at least as
    accurate) of the heuristics and of the learned policies; each row gains its "group"."""
    out = []
    for group, name in (("oracle", "limit"), ("heuristics", "heuristics"), ("learned", "learned")):
        mine = sorted(_group(rows, group), key=lambda r: (r["mean_nfe"], -r["accuracy"]))
        keep = set(pareto_frontier((r["mean_nfe"], r["accuracy"]) for r in mine))
        for r in mine:
            if (r["mean_nfe"], r["accuracy"]) in keep:
                keep.discard((r["mean_nfe"], r["accuracy"]))  # one row per frontier point
                out.append({**r, "group": name})
    return out


def _own_models(sections) -> str:
    """' (sections 0, 0c: `m`; section 5: `m2`)': the sections that name models of their own, by model."""
    by = {}
    for sec in sections:
        if sec.models:
            by.setdefault(", ".join(f"`{m}`" for m in sec.models), []).append(sec.title.split(".")[0])
    return " (" + "; ".join(f"section{'s' * (len(n) > 1)} {', '.join(n)}: {m}" for m, n in by.items()) + ")" if by else ""


def _human(kept: dict, block: str) -> list[str]:
    return [f"<!-- human:{block} -->", kept.get(block, HUMAN_PLACEHOLDER).rstrip("\n"), f"<!-- /human:{block} -->"]


def write_markdown(path, grid, sections, rendered, cfg, seconds, batch):
    """RESULTS.md at `path` (claims, headline frontiers of the `summary` sections, what was tried,
    an index) and APPENDIX beside it (every section: description, figure, reading, notes, human
    interpretation, full table). Human blocks are kept from either file, whichever held them."""
    appendix = os.path.join(os.path.dirname(path), APPENDIX)
    kept = {}
    for f in (appendix, path):
        if os.path.exists(f):
            with open(f) as fh:
                kept.update({m.group(1): m.group(2) for m in HUMAN.finditer(fh.read())})
    d = grid.defaults
    made = (f"_Generated by `python -m training.report{' --quick' if cfg.quick else ''}` on "
            f"{datetime.date.today().isoformat()} from `{os.path.relpath(grid.path)}` (commit {_commit()}). ")
    lines = [
        "# Results", "",
        made + "Every point is in [`results.json`](results.json); every section's reading, notes and full "
        f"table are in [{APPENDIX}]({APPENDIX}). Regenerating rewrites both files except the blocks between "
        "`<!-- human:... -->` markers._", "",
        f"Setup: model `{cfg.model or d['model']}`{_own_models(grid.sections)}, {d['split']} split, dLLM greedy "
        f"(temperature {d['temperature']}), batch {batch}; stochastic policies (random, learned) over seeds "
        f"{list(d['seeds'])} with mean ± std over seeds, deterministic heuristics on one seed. "
        "NFE = dLLM forward passes per problem; tokens / NFE = gen length / mean NFE. "
        f"Points measured by this run took {seconds / 60:.1f} min.", "",
        # a person's verdict on each of the paper's claims, kept across regenerations like the others
        "## The paper's claims", "", *_human(kept, CLAIMS), "",
        "## Headline frontiers", "",
        "Per setting: the oracle (the limit, not a policy), then the Pareto frontier (no other point both "
        "cheaper and at least as accurate) of the heuristics and of the learned policies. Every point of "
        "a section is in its appendix table.", "",
    ]
    for s in sections:
        r = rendered[s.id]
        if not (s.summary and r["rows"]):
            continue
        lines += [f"### {s.title}", ""]
        if r["figure"]:
            lines += [f"Figure: [{r['figure']}]({r['figure']}); every point: [appendix]({APPENDIX}#{s.id})", ""]
        settings = list(dict.fromkeys(row["setting"] for row in r["rows"]))
        for setting in settings:
            mine = frontier_rows([row for row in r["rows"] if row["setting"] == setting])
            lines += ([f"{setting}:", ""] if len(settings) > 1 else []) + [markdown_table(mine, SUMMARY_COLUMNS), ""]
    lines += ["## What was tried", "", *_human(kept, TRIED), "", "## Every section", ""]
    for s in sections:
        fig = rendered[s.id]["figure"]
        lines.append(f"- [{s.title}]({APPENDIX}#{s.id})" + (f" (figure: [{fig}]({fig}))" if fig else ""))
    with open(path, "w") as f:
        f.write("\n".join(lines + [""]))

    lines = ["# Results: every section in full", "",
             made + "[RESULTS.md](RESULTS.md) has the setup, the verdict on each claim, the headline frontiers "
             "and what was tried. Regenerating rewrites this file except the blocks between "
             "`<!-- human:... -->` markers._", ""]
    for s in sections:
        r = rendered[s.id]
        lines += [f'<a id="{s.id}"></a>', "", f"## {s.title}", ""]
        if s.description:
            lines += [s.description.strip(), ""]
        if r["figure"]:
            lines += [f"Figure: [{r['figure']}]({r['figure']})", ""]
        if r["reading"]:
            lines += ["**Reading (generated from the numbers):**", ""] + [f"- {t}" for t in r["reading"]] + [""]
        if r["notes"]:
            lines += ["**Skipped:**", ""] + [f"- {n}" for n in r["notes"]] + [""]
        lines += [*_human(kept, s.id), "", r["table"], ""]
    with open(appendix, "w") as f:
        f.write("\n".join(lines))


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True, cwd=os.path.dirname(__file__)).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv=None):
    from transformers import HfArgumentParser

    (cfg,) = HfArgumentParser(ReportConfig).parse_args_into_dataclasses(args=argv)
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    run_report(cfg)


if __name__ == "__main__":
    main()
