"""Measure a dLLM's card numbers: per-family test accuracy (top-k confidence, one token per step,
semi-AR) and the paper's phenomena (parallel decoding and full diffusion hurt; EOS committed
first). `--write` stores them in the folder's card.json; `--check` re-measures and compares.

    python -m training.dllm_card --model checkpoints/tiny-dllm --check
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

import torch

# (task, policy, params, block_length or None for the task's, "full" for gen_length[, gen_length])
ACCURACY_ROWS = [(name, "top_k_confidence", {"k": 1}, None)
                 for name in ("everyday", "everyday_heldout", "handwritten", "facts", "arithmetic", "word_problems",
                              "word_problems_heldout", "word_problems_long", "sudoku", "sorting")]
COLLAPSE_L = 128  # LLaDA answers GSM8K in a 256-token canvas far longer than most answers; ours is 128
PHENOMENA_ROWS = (
    [("everyday", "top_k_confidence", {"k": k}, b) for k in (1, 2, 4) for b in (None, "full")]
    + [("word_problems", "top_k_confidence", {"k": k}, b) for k in (1, 2, 4, 8) for b in (None, "full")]
    + [("word_problems", "confidence_threshold", {"threshold": t}, b) for t in (0.9, 0.7, 0.5) for b in (None, "full")]
    + [("sudoku", "top_k_confidence", {"k": k}, b) for k in (1, 2, 4) for b in (None, "full")]
    + [("sudoku", "confidence_threshold", {"threshold": 0.9}, b) for b in (None, "full")]
    + [("sudoku", "random", {"k": 1}, "full")]
    # the collapse setting: a canvas far longer than the answers (trained with such EOS padding)
    + [("word_problems", "top_k_confidence", {"k": k}, b, COLLAPSE_L) for k in (1, 2, 4) for b in (None, "full")]
    + [("word_problems", "confidence_threshold", {"threshold": t}, b, COLLAPSE_L) for t in (0.9, 0.7)
       for b in (None, "full")]
    + [("word_problems_long", "top_k_confidence", {"k": k}, b) for k in (1, 2) for b in (None, "full")]
)

# The rows the card's targets need (k = 4 loss, the collapse at L = 128, Sudoku order), a quarter
# of the full table's compute: `--phenomena_core`.
PHENOMENA_CORE = (
    [("everyday", "top_k_confidence", {"k": k}, b) for k in (1, 4) for b in (None, "full")]
    + [("word_problems", "top_k_confidence", {"k": k}, b) for k in (1, 4) for b in (None, "full")]
    + [("word_problems", "confidence_threshold", {"threshold": t}, b) for t in (0.9, 0.7) for b in (None, "full")]
    + [("sudoku", "top_k_confidence", {"k": 1}, b) for b in (None, "full")] + [("sudoku", "random", {"k": 1}, "full")]
    + [("word_problems", "top_k_confidence", {"k": 4}, b, COLLAPSE_L) for b in (None, "full")]
    + [("word_problems", "confidence_threshold", {"threshold": 0.9}, b, COLLAPSE_L) for b in (None, "full")]
)


def measure_row(dllm, task_name, policy_name, params, block, gen_length=None, *, n, batch_size=100,
                eos_early_stop=False, split="test") -> dict:
    """Accuracy, mean NFE, the share of samples whose first commit is EOS padding, and the mean
    response length in tokens (up to the first EOS): committing the padding first shortens answers.

    `eos_early_stop` stops a row once it has committed EOS with everything before it committed: the
    answer text (cut at the first EOS) is then final, so accuracy and the worked-step counts are those
    of the full decode at about half the passes; NFE is the early-stopped one. `split` is "test" for
    the card; "validation" picks between models without touching it."""
    from unmasker import SamplerConfig, build_policy, generate

    from .tasks import get_task
    from .tasks.everyday import wrong_facts

    task = get_task(task_name)
    L = gen_length or task.gen_length
    bl = L if block == "full" else (block or task.block_length)
    cfg = SamplerConfig(gen_length=L, block_length=bl, eos_early_stop=eos_early_stop)
    problems = task.problems(split, n)
    n = len(problems)  # the hand-written set has fewer problems than --n
    correct, nfe, eos_first, length, wrong, invented = 0.0, 0, 0, 0, 0, 0
    eos = torch.tensor(dllm.eos_ids)
    for i in range(0, n, batch_size):
        chunk = problems[i:i + batch_size]
        traj = generate(dllm, build_policy(policy_name, **params), [p.prompt for p in chunk], cfg, seed=i)
        correct += sum(task.reward(traj.texts, chunk))
        wrong += sum(bool(wrong_facts(t)) for t in traj.texts)
        invented += sum(bool(_words(t) & NAME_WORDS - _words(p.prompt)) for t, p in zip(traj.texts, chunk))
        nfe += int(traj.nfe.sum())
        first = traj.unmask_step == traj.unmask_step.clamp(min=0).min(-1, keepdim=True).values
        is_eos = torch.isin(traj.tokens, eos)
        eos_first += int((first & is_eos).any(-1).sum())
        length += int(torch.where(is_eos.any(-1), is_eos.int().argmax(-1), L).sum())
    return {"task": task_name, "policy": policy_name, "params": params, "block_length": bl, "gen_length": L,
            "n": n, "accuracy": correct / n, "nfe": nfe / n, "eos_first": eos_first / n, "response_tokens": length / n,
            "wrong_step_share": wrong / n, "invented_name_share": invented / n}


class RowCache:
    """Rows already measured for these exact weights, one JSON line each under `folder`, so an
    interrupted card run (minutes to an hour on 2 cores) resumes row by row."""

    def __init__(self, folder: str, model_dir: str):
        from .evaluate import file_digest

        digest = file_digest(model_dir, "model.safetensors") if folder else None  # named by the weights, not the folder
        self.path = os.path.join(folder, f"{digest}.jsonl") if digest else None
        self.rows = {}
        if self.path and os.path.exists(self.path):
            for line in open(self.path):
                if line.strip():
                    d = json.loads(line)
                    self.rows[d["key"]] = d["row"]

    def get(self, key: list, measure) -> dict:
        k = json.dumps(key, sort_keys=True)
        if k not in self.rows:
            self.rows[k] = measure()
            if self.path:
                os.makedirs(os.path.dirname(self.path), exist_ok=True)
                with open(self.path, "a") as f:
                    f.write(json.dumps({"key": k, "row": self.rows[k]}) + "\n")
        return self.rows[k]


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def _name_words() -> frozenset:
    from .tasks import everyday_words, word_problems

    return frozenset(n.lower() for n, _ in everyday_words.NAMES + word_problems.NAMES)


NAME_WORDS = _name_words()  # a response naming someone the prompt does not: "Sara" became "ivy"


def unknown_word_row(dllm, *, n: int, batch_size: int = 100) -> dict:
    """Robustness to words the model does not know: everyday test problems that carry a detail
    ("green", "at the park", "on Monday"), decoded as written and with 1-2 detail words replaced by
    the unknown token (top-k, one token per step, semi-AR). Reports both accuracies and the share of
    problems whose extracted answer is the same in both."""
    import random

    from unmasker import SamplerConfig, build_policy, generate

    from .tasks import get_task

    task = get_task("everyday")
    problems = [p for p in task.problems("test", 3 * n) if p.meta["details"]][:n]
    rng = random.Random("unknown-word-row")
    variants = [task.augment(p, rng, rate=1.0, what="detail") for p in problems]
    cfg = SamplerConfig(gen_length=task.gen_length, block_length=task.block_length, eos_early_stop=True)
    same = right = right_unk = 0
    for i in range(0, len(problems), batch_size):
        a, b = problems[i:i + batch_size], variants[i:i + batch_size]
        ta = generate(dllm, build_policy("top_k_confidence", k=1), [p.prompt for p in a], cfg, seed=i).texts
        tb = generate(dllm, build_policy("top_k_confidence", k=1), [p.prompt for p in b], cfg, seed=i).texts
        right += sum(task.reward(ta, a))
        right_unk += sum(task.reward(tb, b))
        same += sum(task.extract(x) == task.extract(y) for x, y in zip(ta, tb))
    m = len(problems)
    return {"task": "everyday", "n": m, "accuracy": right / m, "accuracy_unknown_detail": right_unk / m,
            "same_answer": same / m}


def table(rows) -> str:
    out = ["| task | policy | params | block | NFE | accuracy | first commit is EOS | response tokens |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        p = ", ".join(f"{k}={v}" for k, v in r["params"].items())
        out.append(f"| {r['task']} | {r['policy']} | {p} | {r['block_length']}/{r['gen_length']} | {r['nfe']:.1f} | "
                   f"{100 * r['accuracy']:.1f}% | {100 * r['eos_first']:.0f}% | {_fmt(r.get('response_tokens'))} |")
    return "\n".join(out)


def failure_summary(rows, points: float = 0.10) -> list[str]:
    """One line per (task, policy, params, L): does full diffusion lose >= `points` against semi-AR
    blocks at the same canvas, and how often is EOS padding committed first there."""
    semi = {_key(r): r for r in rows if r["block_length"] != r["gen_length"]}
    out = []
    for r in rows:
        s = semi.get(_key(r))
        if r["block_length"] != r["gen_length"] or s is None:
            continue
        drop = s["accuracy"] - r["accuracy"]
        verdict = "FAILS" if drop >= points else "holds"
        p = ", ".join(f"{k}={v}" for k, v in r["params"].items())
        out.append(f"{verdict}: {r['task']} L={r['gen_length']} {r['policy']} ({p}): full diffusion "
                   f"{100 * r['accuracy']:.1f}% at {r['nfe']:.1f} NFE vs semi-AR (BL={s['block_length']}) "
                   f"{100 * s['accuracy']:.1f}% at {s['nfe']:.1f} NFE ({100 * (r['accuracy'] - s['accuracy']):+.1f} points); EOS first in "
                   f"{100 * r['eos_first']:.0f}% vs {100 * s['eos_first']:.0f}%, response {r['response_tokens']:.1f} "
                   f"vs {s['response_tokens']:.1f} tokens")
    return out


def _key(r) -> tuple:
    return r["task"], r["policy"], tuple(sorted(r["params"].items())), r["gen_length"]


def _fmt(x) -> str:
    return "–" if x is None else f"{x:.1f}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="checkpoints/tiny-dllm", help="dLLM folder")
    ap.add_argument("--n", type=int, default=1000, help="test problems per row")
    ap.add_argument("--phenomena", action="store_true", help="also measure the phenomena table")
    ap.add_argument("--only_phenomena", action="store_true", help="skip the accuracy rows (keep the card's)")
    ap.add_argument("--phenomena_core", action="store_true", help="measure only the phenomena rows the targets need")
    ap.add_argument("--phenomena_n", type=int, default=0, help="test problems per phenomena row (0 = --n)")
    ap.add_argument("--write", action="store_true", help="store the numbers in the folder's card.json")
    ap.add_argument("--check", action="store_true", help="compare with card.json; exit 1 if off by > tolerance")
    ap.add_argument("--tolerance", type=float, default=0.03, help="allowed accuracy difference for --check")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    ap.add_argument("--cache_dir", default="runs/dllm_card",
                    help="rows measured for the same weights are kept here and reused ('' = off; --check never reuses)")
    args = ap.parse_args(argv)
    if args.check and args.only_phenomena:
        ap.error("--check compares the accuracy rows; it cannot be combined with --only_phenomena")
    from unmasker import load_dllm

    if args.threads:
        torch.set_num_threads(args.threads)
    dllm = load_dllm(args.model, device="cpu")
    card_path = os.path.join(args.model, "card.json")
    card = json.load(open(card_path)) if os.path.exists(card_path) else {}
    measured = {}
    cache = RowCache("" if args.check else args.cache_dir, args.model)

    def row(spec, n, **kw):
        r = cache.get([list(spec), n, kw], lambda: measure_row(dllm, *spec, n=n, **kw))
        print(f"  {r['task']} {r['policy']} {r['params']} {r['block_length']}/{r['gen_length']}: "
              f"{100 * r['accuracy']:.1f}% (n = {r['n']}, {r['nfe']:.1f} NFE)", flush=True)
        return r

    if not args.only_phenomena:
        rows = [row(r, args.n, eos_early_stop=True) for r in ACCURACY_ROWS]
        print("## Test accuracy, top-k confidence, one token per step, semi-AR\n" + table(rows), flush=True)
        measured = {"accuracy": {r["task"]: round(r["accuracy"], 4) for r in rows}, "n": args.n,
                    "n_per_task": {r["task"]: r["n"] for r in rows},
                    "wrong_step_share": {r["task"]: round(r["wrong_step_share"], 4) for r in rows},
                    "invented_name_share": {r["task"]: round(r["invented_name_share"], 4) for r in rows}}
        unk = cache.get(["unknown_words", args.n], lambda: unknown_word_row(dllm, n=args.n))
        print(f"\n## Unknown words in non-essential places (everyday, n = {unk['n']})\n"
              f"accuracy as written {100 * unk['accuracy']:.1f}%, with 1-2 detail words unknown "
              f"{100 * unk['accuracy_unknown_detail']:.1f}%, same answer {100 * unk['same_answer']:.1f}%", flush=True)
        measured["unknown_words"] = unk
        measured["accuracy_decoding"] = ("top-k confidence, one token per step, semi-AR, each row stopped once it has "
                                         "committed EOS with everything before it (its answer text is then final)")
    if args.phenomena or args.phenomena_core:
        ph = [row(r, args.phenomena_n or args.n) for r in (PHENOMENA_ROWS if args.phenomena else PHENOMENA_CORE)]
        print("\n## Phenomena (test split)\n" + table(ph))
        summary = failure_summary(ph)
        print("\n## Where full diffusion fails (>= 10 points below semi-AR at the same canvas)\n"
              + "\n".join("- " + line for line in summary))
        measured["phenomena"] = ph
        measured["full_diffusion_summary"] = summary
    status = 0
    if args.check:
        stored = card.get("measured", {}).get("accuracy", {})
        for task, acc in measured["accuracy"].items():
            if task not in stored:
                print(f"check: {task}: no stored number in {card_path}")
                status = 1
            elif abs(stored[task] - acc) > args.tolerance:
                print(f"check: {task}: measured {acc:.3f}, card says {stored[task]:.3f}")
                status = 1
        print("check: " + ("card reproduced" if status == 0 else "MISMATCH"))
    if args.write:
        card["measured"] = {**card.get("measured", {}), **measured}
        with open(card_path, "w") as f:
            json.dump(card, f, indent=2)
    return status


if __name__ == "__main__":
    sys.exit(main())
