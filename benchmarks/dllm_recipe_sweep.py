"""Compare training recipes for the embedded dLLM: run several `training.train_dllm` configurations
side by side (one subprocess each) and print validation accuracy along the way and at the end.

A script, not a test. On a GPU host the runs share the card and finish in minutes, which makes it
a cheap way to choose a recipe before the CPU run that ships (the 90-minute budget of issue 3):

    python benchmarks/dllm_recipe_sweep.py --root runs/sweep --max-minutes 6
    python benchmarks/dllm_recipe_sweep.py --only base,wide --recipe "wide=--hidden_size 256"

Every recipe uses the same step count (--max-steps), so recipes are compared at equal data, and
the final numbers are measured on `--final-problems` validation problems per task (never the test
split) with top-k confidence, one token per step, semi-AR blocks. A summary JSON is written to
`--root`/summary.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

RECIPES = {  # name -> extra train_dllm arguments (defaults: the shipped tiny-dllm's recipe)
    "base": "",
    "b": "--seed 1 --hidden_size 160 --num_layers 6 --intermediate_size 480",
    "lr3e-3": "--lr 3e-3",
    "wide": "--hidden_size 256 --intermediate_size 1024",
    "words": "--mixture word_problems:0.75,word_problems_long:0.05,sudoku:0.15,sorting:0.05",
    "deep": "--num_layers 8",
}


def final_accuracy(folder: str, n: int) -> dict[str, float]:
    import torch

    from training.train_dllm import evaluate_model
    from unmasker import load_dllm

    dllm = load_dllm(folder, device="cuda" if torch.cuda.is_available() else "cpu")
    return evaluate_model(dllm.model, dllm.tokenizer, n)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default="runs/recipe_sweep", help="one output folder per recipe goes here")
    ap.add_argument("--max-steps", type=int, default=16000, help="steps per recipe (the cosine length)")
    ap.add_argument("--max-minutes", type=float, default=6.0, help="wall cap per recipe")
    ap.add_argument("--eval-every", type=int, default=2000)
    ap.add_argument("--eval-problems", type=int, default=100)
    ap.add_argument("--final-problems", type=int, default=500)
    ap.add_argument("--only", default="", help="comma-separated recipe names (default: all)")
    ap.add_argument("--recipe", action="append", default=[], help='add or replace one: "name=--arg value ..."')
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads per run")
    args = ap.parse_args(argv)
    recipes = dict(RECIPES)
    for spec in args.recipe:
        name, sep, extra = spec.partition("=")
        if not sep or not name.strip():
            ap.error(f"--recipe {spec!r}: expected name=ARGS")
        recipes[name.strip()] = extra
    if args.only:
        unknown = [n for n in args.only.split(",") if n not in recipes]
        if unknown:
            ap.error(f"--only: unknown recipes {unknown}; known: {sorted(recipes)}")
        recipes = {n: recipes[n] for n in args.only.split(",")}

    os.makedirs(args.root, exist_ok=True)
    procs, t0 = {}, time.time()
    for name, extra in recipes.items():
        out = os.path.join(args.root, name)
        cmd = [sys.executable, "-m", "training.train_dllm", "--output_dir", out, "--name", name,
               "--max_steps", str(args.max_steps), "--max_minutes", str(args.max_minutes),
               "--eval_every", str(args.eval_every), "--eval_problems", str(args.eval_problems),
               "--save_every", str(args.max_steps), "--threads", str(args.threads), "--resume", "false",
               *shlex.split(extra)]
        log = open(os.path.join(args.root, f"{name}.log"), "w")
        procs[name] = (subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT), log)
    summary = {}
    for name, (proc, log) in procs.items():
        rc = proc.wait()
        log.close()
        folder = os.path.join(args.root, name)
        curve = []
        log_path = os.path.join(folder, "train_log.jsonl")
        if os.path.exists(log_path):
            with open(log_path) as f:
                curve = [json.loads(line) for line in f if '"val"' in line]
        card = {}
        if os.path.exists(os.path.join(folder, "card.json")):
            with open(os.path.join(folder, "card.json")) as f:
                card = json.load(f)
        row = {"args": recipes[name], "rc": rc, "parameters": card.get("parameters"), "steps": card.get("steps"),
               "wall_minutes": card.get("wall_minutes"),
               "curve": [(r["step"], r["val"]) for r in curve]}
        if rc == 0:
            row["final"] = final_accuracy(folder, args.final_problems)
        summary[name] = row
        print(f"{name:10s} rc={rc} params={row['parameters']} steps={row['steps']} "
              f"wall={row['wall_minutes']} min final={row.get('final')}", flush=True)
        for step, val in row["curve"]:
            print(f"    step {step:6d}  " + "  ".join(f"{k} {v:.2f}" for k, v in val.items()))
    with open(os.path.join(args.root, "summary.json"), "w") as f:
        json.dump({"max_steps": args.max_steps, "final_problems": args.final_problems,
                   "seconds": round(time.time() - t0, 1), "recipes": summary}, f, indent=1)
    return 0 if all(r["rc"] == 0 for r in summary.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
