"""Evaluation harness: (policy, params) x setting x seed -> one measured point, kept in a JSON.

Owns the grid vocabulary (`Method` expands a sweep, or a glob of learned checkpoints filtered by
their card.json, into `Variant`s; `Setting` is task / model / block length / gen length), the
runner (batched through `unmasker.generate`, the one sampling loop), the resumable point store,
and the pure Pareto helpers. It knows nothing about report sections, tables or figures
(`training.report`, `training.eval_views`).

    python -m training.evaluate --policies top_k_confidence:k=1,2,4 confidence_threshold:threshold=0.7,0.9 \
        --task word_problems --block_lengths 8 full --n 200 --out runs/eval/results.json
"""

from __future__ import annotations

import glob
import hashlib
import itertools
import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

# Policies that draw from the sampler's generator: evaluated over every seed (mean and std);
# the others are deterministic under greedy decoding, so one seed says everything.
STOCHASTIC_POLICIES = frozenset({"random", "learned"})
CARD = "card.json"
RESULTS_VERSION = 1


# -- Pareto helpers (pure) --------------------------------------------------------------------
def pareto_frontier(points: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """Non-dominated (nfe, accuracy) points (minimise NFE, maximise accuracy), sorted by NFE.

    Along the result NFE and accuracy both strictly increase; of equal-NFE points only the most
    accurate survives, and a point is dropped when a cheaper-or-equal one is at least as accurate.
    """
    out: list[tuple[float, float]] = []
    # NFE ascending, and at equal NFE the most accurate first, so a later equal-NFE point can
    # never beat the one already kept.
    for nfe, acc in sorted(set(points), key=lambda p: (p[0], -p[1])):
        if not out or acc > out[-1][1]:
            out.append((nfe, acc))
    return out


def step_accuracy(frontier: Sequence[tuple[float, float]], nfe: float) -> float | None:
    """Best accuracy a frontier reaches with at most `nfe` NFE (step-wise, never extrapolated
    upwards); None when it has no point that cheap."""
    reachable = [acc for n, acc in frontier if n <= nfe + 1e-9]
    return max(reachable) if reachable else None


def matched_nfe_gap(frontier_a, frontier_b) -> list[tuple[float, float, float, float]]:
    """Accuracy of frontier a minus frontier b at a's NFE values.

    For each point (nfe, acc_a) of a, b's accuracy is the best b reaches at NFE <= nfe (step-wise
    interpolation from below: b gets no credit for points that cost more). Points of a cheaper
    than every point of b are left out. Returns [(nfe, acc_a, acc_b, acc_a - acc_b)], NFE ascending.
    """
    out = []
    for nfe, acc_a in sorted(frontier_a):
        acc_b = step_accuracy(frontier_b, nfe)
        if acc_b is not None:
            out.append((nfe, acc_a, acc_b, acc_a - acc_b))
    return out


# -- grid vocabulary --------------------------------------------------------------------------
@dataclass(frozen=True)
class Setting:
    """Where a policy is run: task split, dLLM folder, block / generation length, n problems."""

    task: str
    model: str
    block_length: int
    gen_length: int
    split: str = "test"
    n: int = 500
    temperature: float = 0.0  # dLLM token temperature; the paper compares policies greedily

    def __post_init__(self):
        from .tasks import SPLITS, check_task_name

        check_task_name(self.task)
        if self.split not in SPLITS:
            raise ValueError(f"split={self.split!r}: expected one of {SPLITS}")
        for name in ("block_length", "gen_length", "n"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}={v!r}: must be an integer >= 1")
        if self.gen_length % self.block_length:
            raise ValueError(f"block_length={self.block_length} must divide gen_length={self.gen_length}")
        if not self.temperature >= 0:
            raise ValueError(f"temperature={self.temperature!r}: must be >= 0")

    @property
    def num_blocks(self) -> int:
        return self.gen_length // self.block_length

    def describe(self) -> str:
        model = os.path.basename(os.path.normpath(self.model))
        return f"{self.task} | {model} | L={self.gen_length} BL={self.block_length}"


@dataclass(frozen=True)
class Variant:
    """One concrete policy: registry name + constructor params, and the figure line it belongs to."""

    method: str  # id of the Method it came from
    line: str  # legend label
    policy: str
    params: dict
    policy_hash: str | None = None  # weights fingerprint of a learned checkpoint
    checkpoint: str | None = None  # display name of the checkpoint
    shown: dict | None = None  # params as written in the grid (defaults included), for display

    @property
    def stochastic(self) -> bool:
        return self.policy in STOCHASTIC_POLICIES

    def describe(self) -> str:
        shown = {k: v for k, v in (self.shown if self.shown is not None else self.params).items() if k != "checkpoint"}
        parts = ([f"ckpt={self.checkpoint}"] if self.checkpoint else []) + [f"{k}={v}" for k, v in sorted(shown.items())]
        return ", ".join(parts)


@dataclass(frozen=True)
class Method:
    """A family of policy variants drawn as one line: a registered policy with fixed `params`
    and a cartesian `sweep` over parameter values. For `learned`, `checkpoints` is a glob (under
    `policies_dir`) of policy folders, kept when their card.json matches every `match` field
    (a value or a list of accepted values); `per_checkpoint` draws one line per checkpoint."""

    id: str
    policy: str
    label: str = ""
    params: dict = field(default_factory=dict)
    sweep: dict = field(default_factory=dict)
    checkpoints: str | None = None
    match: dict = field(default_factory=dict)
    per_checkpoint: bool = False
    seeds: int | None = None  # cap on the number of seeds (None: all of the section's seeds)

    def __post_init__(self):
        from unmasker.policies import POLICIES

        from .oracle import REFERENCES

        if self.policy not in POLICIES and self.policy not in REFERENCES:
            raise ValueError(f"method {self.id!r}: policy={self.policy!r} is not one of {sorted(POLICIES)} "
                             f"(or a reference point: {sorted(REFERENCES)})")
        allowed = {f.name for f in _fields(self.policy)} - {"net"}
        for where, d in (("params", self.params), ("sweep", self.sweep)):
            bad = set(d) - allowed
            if bad:
                raise ValueError(f"method {self.id!r}: {where} has unknown parameters {sorted(bad)}; "
                                 f"{self.policy} takes {sorted(allowed)}")
        for k, v in self.sweep.items():
            if not isinstance(v, (list, tuple)) or not v:
                raise ValueError(f"method {self.id!r}: sweep.{k}={v!r} must be a non-empty list")
        if self.checkpoints is not None and self.policy != "learned":
            raise ValueError(f"method {self.id!r}: checkpoints= only applies to policy 'learned'")
        if self.seeds is not None and (not isinstance(self.seeds, int) or self.seeds < 1):
            raise ValueError(f"method {self.id!r}: seeds={self.seeds!r} must be an integer >= 1")

    def variants(self, policies_dir: str = "checkpoints/policies") -> tuple[list[Variant], list[str]]:
        """Expand into variants; the second value lists notes on what was skipped and why."""
        label = self.label or self.id
        combos = [{**self.params, **dict(zip(self.sweep, vals))} for vals in itertools.product(*self.sweep.values())]
        if self.checkpoints is None:
            return [Variant(self.id, label, self.policy, canonical_params(self.policy, c), shown=c)
                    for c in combos], []
        pattern = os.path.join(policies_dir, self.checkpoints)
        found = sorted(p for p in glob.glob(pattern) if os.path.isdir(p))
        cards = {p: read_card(p) for p in found}
        matching = [p for p in found if card_matches(cards[p], self.match)]
        notes = [f"{label}: {p} has no config.json + model.safetensors, or its training run has not ended; skipped."
                 for p in matching if not _complete(p, cards[p])]
        kept = [p for p in matching if _complete(p, cards[p])]
        if not kept:
            why = f"none of {len(found)} folder(s) under {pattern!r} is a complete checkpoint whose card.json " \
                f"has {self.match}" if found else f"no checkpoint folder matches {pattern!r}"
            return [], notes + [f"{label}: skipped ({why})."]
        out = []
        for path in kept:
            name = cards[path].get("name") or os.path.basename(os.path.normpath(path))
            line = f"{label} [{name}]" if self.per_checkpoint else label
            digest = file_digest(path, "model.safetensors")
            for c in combos:
                out.append(Variant(self.id, line, self.policy, canonical_params(self.policy, {**c, "checkpoint": path}),
                                   digest, name, shown=c))
        return out, notes


def canonical_params(policy: str, params: dict) -> dict:
    """Drop parameters equal to the policy's defaults, so that e.g. {temperature: 0.5, beta: 1.0}
    and {temperature: 0.5} are one point (measured once)."""
    from dataclasses import MISSING

    defaults = {f.name: f.default for f in _fields(policy) if f.default is not MISSING}
    return {k: v for k, v in params.items() if not (k in defaults and _same(v, defaults[k]))}


def _fields(policy: str) -> list:
    """Constructor parameters of a registered policy or of a reference point (the oracle)."""
    import dataclasses

    from unmasker.policies import policy_params

    from .oracle import REFERENCES

    return list(dataclasses.fields(REFERENCES[policy])) if policy in REFERENCES else policy_params(policy)


def build_method_policy(policy: str, params: dict):
    """A registered policy, or a reference point (which prepares a policy per batch, see oracle.py)."""
    import unmasker

    from .oracle import REFERENCES

    if policy in REFERENCES:
        return REFERENCES[policy](**params)
    return unmasker.build_policy(policy, **params)


def _complete(folder: str, card: dict) -> bool:
    """Weights and config present, and not a run in progress: training/train_policy.py saves the
    best weights and a card (`card`, as read_card gives it) with "steps" during a run and adds
    "total_steps" when the run ends."""
    if not all(os.path.isfile(os.path.join(folder, n)) for n in ("config.json", "model.safetensors")):
        return False
    return "steps" not in card or "total_steps" in card


def read_card(folder: str) -> dict:
    """card.json of a checkpoint folder ({} when absent or unreadable). Fields under a nested
    "config" object are visible too, top-level fields win."""
    try:
        with open(os.path.join(folder, CARD)) as f:
            card = json.load(f)
    except (OSError, json.JSONDecodeError):
        return {}
    nested = card.get("config") if isinstance(card.get("config"), dict) else {}
    return {**nested, **card}


def card_matches(card: dict, match: dict) -> bool:
    """Every match field present in the card with an accepted value (numbers compare as numbers)."""
    for key, want in match.items():
        if key not in card:
            return False
        accepted = want if isinstance(want, list) else [want]
        if not any(_same(card[key], w) for w in accepted):
            return False
    return True


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def file_digest(folder: str, *names: str) -> str | None:
    """Short sha256 of the first weights file found in a local folder (None for hub ids), so a
    retrained model or policy never reuses stale points."""
    for name in names:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            return h.hexdigest()[:16]
    return None


def model_available(model: str) -> bool:
    """A local dLLM folder with its config and weights (the report only runs local models)."""
    return os.path.isfile(os.path.join(model, "config.json")) and any(
        os.path.isfile(os.path.join(model, n)) for n in ("model.safetensors", "pytorch_model.bin"))


@dataclass(frozen=True)
class Request:
    """One point to measure."""

    setting: Setting
    variant: Variant
    seed: int
    model_hash: str | None = None
    problems_hash: str | None = None  # fingerprint of the problem list: a changed task never reuses points

    def key(self) -> str:
        """Identity of the measurement (not of the figure line): equal keys share one point."""
        s, v = self.setting, self.variant
        return json.dumps({
            "policy": v.policy, "params": v.params, "policy_hash": v.policy_hash, "task": s.task,
            "split": s.split, "model": s.model, "model_hash": self.model_hash, "block_length": s.block_length,
            "gen_length": s.gen_length, "temperature": s.temperature, "seed": self.seed, "n": s.n,
            "problems_hash": self.problems_hash,
        }, sort_keys=True)


def make_requests(settings: Sequence[Setting], variants: Sequence[Variant], seeds: Sequence[int],
                  method_seeds: dict[str, int | None] | None = None) -> list[Request]:
    """settings x variants x seeds; deterministic variants get the first seed only."""
    hashes: dict[str, str | None] = {}
    problem_hashes: dict[tuple, str] = {}
    out = []
    for s in settings:
        if s.model not in hashes:
            hashes[s.model] = file_digest(s.model, "model.safetensors", "pytorch_model.bin")
        pkey = (s.task, s.split, s.n)
        if pkey not in problem_hashes:
            problem_hashes[pkey] = problems_digest(*pkey)
        for v in variants:
            use = list(seeds) if v.stochastic or s.temperature > 0 else list(seeds)[:1]
            cap = (method_seeds or {}).get(v.method)
            for seed in use[:cap] if cap else use:
                out.append(Request(s, v, seed, hashes[s.model], problem_hashes[pkey]))
    return out


def problems_digest(task: str, split: str, n: int) -> str:
    """Short sha256 of the n problems a point is measured on (prompts and answers), so a point
    measured on an earlier version of a task generator is never reused for the current one."""
    from .tasks import get_task

    h = hashlib.sha256()
    for p in get_task(task).problems(split, n):
        h.update(json.dumps([p.prompt, p.answer]).encode())
    return h.hexdigest()[:16]


# -- point store ------------------------------------------------------------------------------
def load_points(path: str) -> dict[str, dict]:
    """key -> point from a results JSON ({} if the file does not exist)."""
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        data = json.load(f)
    if data.get("version") != RESULTS_VERSION:
        raise ValueError(f"{path}: results version {data.get('version')!r}, expected {RESULTS_VERSION}")
    return {p["key"]: p for p in data["points"]}


def save_points(path: str, points: dict[str, dict]) -> None:
    """Write atomically (temp file + rename): an interrupted run never leaves a broken JSON."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump({"version": RESULTS_VERSION, "points": list(points.values())}, f, indent=1)
    os.replace(tmp, path)


# -- measuring ---------------------------------------------------------------------------------
class TimedPolicy:
    """Forwards `select` to a policy and accumulates the seconds it takes (its own overhead)."""

    def __init__(self, policy):
        self.policy, self.seconds = policy, 0.0

    @property
    def reads(self):
        """The wrapped policy's declared features (None: all), so timing never makes the loop less lean."""
        return getattr(self.policy, "reads", None)

    def select(self, ctx):
        cuda = ctx.confidence.is_cuda
        if cuda:  # kernels run asynchronously: time only completed work
            import torch

            torch.cuda.synchronize()
        start = time.perf_counter()
        out = self.policy.select(ctx)
        if cuda:
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - start
        return out


def evaluate_point(dllm, task, problems, policy, config, seed: int, batch_size: int = 64,
                   on_batch: Callable[[int], None] | None = None) -> dict:
    """Run `policy` on `problems` in batches through `unmasker.generate` and measure one point.

    Batch i uses generator seed (seed * 1_000_003 + i) so batches draw independent streams.
    tokens_per_nfe = gen_length / mean NFE. forward_passes counts batch-level dLLM calls (a batch
    runs until its slowest sample finishes each block), the quantity that drives wall time.

    A reference point (`policy.prepare`, the oracle) first runs its own reference decode per batch
    (not counted in NFE, wall or passes) and adds reference_accuracy and oracle_agreement (the
    share of problems whose tokens equal the reference's).
    """
    import unmasker

    timed = TimedPolicy(policy)
    if task.generation_prefix:
        dllm = dllm.with_prefix(task.generation_prefix)
    rewards, nfe, still, wall, passes = [], [], [], 0.0, 0
    ref_rewards, agree = [], []
    for i, start in enumerate(range(0, len(problems), batch_size)):
        chunk = problems[start:start + batch_size]
        prompts, batch_seed, run_dllm = [p.prompt for p in chunk], seed * 1_000_003 + i, dllm
        if hasattr(policy, "prepare"):
            run_dllm, timed.policy = policy.prepare(dllm, prompts, config, batch_seed)
        t0 = time.perf_counter()
        traj = unmasker.generate(run_dllm, timed, prompts, config, seed=batch_seed)
        wall += time.perf_counter() - t0
        rewards += task.reward(traj.texts, chunk)
        if hasattr(timed.policy, "reference"):
            ref = timed.policy.reference
            ref_rewards += task.reward(ref.texts, chunk)
            agree += (traj.tokens == ref.tokens).all(-1).tolist()
        nfe += traj.nfe.tolist()
        still += traj.still_masked.tolist()
        passes += int(traj.unmask_step.max()) + 1
        if on_batch:
            on_batch(len(chunk))
    n = len(problems)
    mean_nfe = sum(nfe) / n
    return {
        "accuracy": sum(rewards) / n, "mean_nfe": mean_nfe,
        "std_nfe": math.sqrt(sum((x - mean_nfe) ** 2 for x in nfe) / n),
        "tokens_per_nfe": config.gen_length / mean_nfe if mean_nfe else None,
        "wall_seconds": wall, "policy_seconds": timed.seconds,
        "policy_time_share": timed.seconds / wall if wall else None,
        "forward_passes": passes, "still_masked": sum(still) / n, "batch_size": batch_size,
        **({"reference_accuracy": sum(ref_rewards) / n, "oracle_agreement": sum(agree) / n} if agree else {}),
    }


def run_requests(requests: Sequence[Request], out_path: str, batch_size: int = 64, device: str | None = None,
                 progress: bool = True, log: Callable[[str], None] = print) -> dict[str, dict]:
    """Measure every request whose key is not yet in `out_path`, saving after each point.

    Returns the store (key -> point) including earlier points. Models are loaded once each.
    """
    import unmasker
    from tqdm import tqdm

    from .tasks import get_task

    store = load_points(out_path)
    unique = {}
    for r in requests:
        unique.setdefault(r.key(), r)
    pending = sorted((r for k, r in unique.items() if k not in store),
                     key=lambda r: (r.setting.model, r.setting.task, r.setting.gen_length))
    if len(unique) > len(pending):
        log(f"resume: {len(unique) - len(pending)} of {len(unique)} points already in {out_path}")
    bar = tqdm(total=sum(r.setting.n for r in pending), unit="problem", disable=not progress, dynamic_ncols=True)
    dllm, loaded, tasks, problems = None, None, {}, {}
    for r in pending:
        s, v = r.setting, r.variant
        if loaded != s.model:
            dllm, loaded = unmasker.load_dllm(s.model, device=device), s.model
        task = tasks.setdefault(s.task, get_task(s.task))
        probs = problems.setdefault((s.task, s.split, s.n), task.problems(s.split, s.n))
        policy = build_method_policy(v.policy, v.params)
        config = unmasker.SamplerConfig(gen_length=s.gen_length, block_length=s.block_length, temperature=s.temperature)
        bar.set_description(f"{v.line} {v.describe()} | {s.task} BL={s.block_length} seed={r.seed}"[:80])
        measured = evaluate_point(dllm, task, probs, policy, config, r.seed, batch_size, bar.update)
        store[r.key()] = {"key": r.key(), **json.loads(r.key()), "checkpoint_name": v.checkpoint,
                          "model_name": dllm.name, **measured, "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        save_points(out_path, store)
    bar.close()
    return store


def estimate_seconds(requests: Sequence[Request], store: dict[str, dict], batch_size: int,
                     sample_pass_seconds: float) -> float:
    """Rough wall time of the pending requests: batches x batch-level forward passes x cost.

    Passes per batch come from an equal point already measured (any seed / n), else the exact
    schedule for k-per-step policies, else gen_length / 2 for adaptive ones (a guess).
    """
    measured = {}
    for p in store.values():
        k = _shape_key(p["policy"], p["params"], p["task"], p["model"], p["block_length"], p["gen_length"])
        measured[k] = p["forward_passes"] / math.ceil(p["n"] / p["batch_size"])
    total = 0.0
    for r in {r.key(): r for r in requests if r.key() not in store}.values():
        s, v = r.setting, r.variant
        k = _shape_key(v.policy, v.params, s.task, s.model, s.block_length, s.gen_length)
        if k in measured:
            passes = measured[k]
        elif "k" in v.params:
            passes = s.num_blocks * math.ceil(s.block_length / int(v.params["k"]))
        else:
            passes = s.gen_length / 2
        # a pass costs about in proportion to the sequence (prompt ~ 32 tokens + canvas)
        total += s.n * passes * sample_pass_seconds * (s.gen_length + 32) / (48 + 32)
    return total


def _shape_key(policy, params, task, model, bl, gl) -> str:
    return json.dumps([policy, params, task, model, bl, gl], sort_keys=True)


def calibrate(model: str, batch_size: int, device: str | None = None, passes: int = 12) -> float:
    """Seconds per sample per step of the real loop (dLLM pass + sampler + a cheap policy) at
    L = 48 on a word-problem batch, after a warm-up at the same batch size."""
    import unmasker

    from .tasks import get_task

    dllm = unmasker.load_dllm(model, device=device)
    prompts = [p.prompt for p in get_task("word_problems").problems("test", batch_size)]
    config = unmasker.SamplerConfig(gen_length=48, block_length=48)
    policy = unmasker.build_policy("top_k_confidence", k=48 // passes)
    unmasker.generate(dllm, unmasker.build_policy("top_k_confidence", k=24), prompts, config)  # warm-up
    t0 = time.perf_counter()
    unmasker.generate(dllm, policy, prompts, config)
    return (time.perf_counter() - t0) / (passes * batch_size)


# -- command line -----------------------------------------------------------------------------
def parse_policy_spec(spec: str, index: int = 0) -> Method:
    """'NAME[:PARAM=V1,V2[:PARAM=...]]' -> Method sweeping the listed values. A learned
    `checkpoint=` value may be a glob; each match becomes its own line."""
    name, *pairs = spec.split(":")
    sweep, checkpoints = {}, None
    for pair in pairs:
        key, sep, values = pair.partition("=")
        if not sep or not values:
            raise ValueError(f"--policies {spec!r}: expected NAME:PARAM=V1,V2")
        if key == "checkpoint":
            checkpoints = values
            continue
        sweep[key.strip()] = [_scalar(v) for v in values.split(",")]
    if checkpoints is not None:
        return Method(id=f"{name}{index}", policy=name, label=name, sweep=sweep,
                      checkpoints=os.path.abspath(checkpoints), per_checkpoint=True)
    return Method(id=f"{name}{index}", policy=name, label=name, sweep=sweep)


def _scalar(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


@dataclass(frozen=True)
class EvalConfig:
    policies: list[str] = field(
        default_factory=lambda: ["top_k_confidence:k=1,2,4", "confidence_threshold:threshold=0.7,0.9"],
        metadata={"help": "policy specs NAME[:PARAM=V1,V2...]; learned:checkpoint=GLOB:temperature=0.5,1"})
    task: str = field(default="word_problems", metadata={"help": "task family (training.tasks), or gsm8k:PATH / math:PATH for a local file"})
    split: str = field(default="test", metadata={"help": "train / validation / test"})
    model: str = field(default="checkpoints/tiny-dllm", metadata={"help": "dLLM folder or hub id"})
    block_lengths: list[str] = field(default_factory=lambda: ["task"],
                                     metadata={"help": "block lengths; 'task' = the task's, 'full' = gen length"})
    gen_lengths: list[str] = field(default_factory=lambda: ["task"], metadata={"help": "gen lengths; 'task' = the task's"})
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"help": "seeds (stochastic policies use all)"})
    n: int = field(default=200, metadata={"help": "problems per point"})
    temperature: float = field(default=0.0, metadata={"help": "dLLM token temperature (0 = greedy)"})
    batch_size: int = field(default=64, metadata={"help": "problems per generate() call"})
    out: str = field(default="runs/eval/results.json", metadata={"help": "results JSON (resumed if it exists)"})
    figure: str = field(default="", metadata={"help": "frontier HTML (default: beside --out)"})
    device: str = field(default="", metadata={"help": "cpu / cuda (default: cuda if available)"})
    threads: int = field(default=0, metadata={"help": "torch CPU threads (0 = leave default)"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})

    def __post_init__(self):
        if self.batch_size < 1 or self.n < 1:
            raise ValueError(f"batch_size={self.batch_size}, n={self.n}: must be >= 1")
        for spec in self.policies:
            parse_policy_spec(spec)


def expand_lengths(block_lengths: Sequence, gen_lengths: Sequence, task_name: str) -> list[tuple[int, int]]:
    """(block, gen) pairs from lists of ints, 'task' (the task's own length) or 'full' (block =
    gen length); a block length that does not divide its gen length raises ValueError."""
    from .tasks import get_task

    task = get_task(task_name)
    out = []
    for g in (task.gen_length if str(g) == "task" else int(g) for g in gen_lengths):
        for b in block_lengths:
            bl = g if str(b) == "full" else task.block_length if str(b) == "task" else int(b)
            if g % bl:
                raise ValueError(f"block length {bl} does not divide gen length {g}")
            out.append((bl, g))
    return out


def main(argv=None):
    from transformers import HfArgumentParser

    from .eval_views import aggregate, frontier_figure, markdown_table

    (cfg,) = HfArgumentParser(EvalConfig).parse_args_into_dataclasses(args=argv)
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    variants, notes = [], []
    for i, spec in enumerate(cfg.policies):
        vs, ns = parse_policy_spec(spec, i).variants()
        variants += vs
        notes += ns
    settings = [Setting(cfg.task, cfg.model, bl, gl, cfg.split, cfg.n, cfg.temperature)
                for bl, gl in expand_lengths(cfg.block_lengths, cfg.gen_lengths, cfg.task)]
    requests = make_requests(settings, variants, cfg.seeds)
    store = run_requests(requests, cfg.out, cfg.batch_size, cfg.device or None, progress=cfg.progress)
    rows = aggregate([(r, store[r.key()]) for r in requests])
    fig_path = cfg.figure or os.path.splitext(cfg.out)[0] + ".html"
    frontier_figure(rows, f"{cfg.task} ({cfg.split}, n={cfg.n})", path=pareto_frontier).write_html(
        fig_path, include_plotlyjs="cdn")
    print(markdown_table(rows))
    for note in notes:
        print(f"note: {note}")
    print(f"points: {cfg.out}\nfigure: {fig_path}")


if __name__ == "__main__":
    main()
