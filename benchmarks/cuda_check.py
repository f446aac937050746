"""Does the one sampling loop give the same answers on a GPU as on the CPU? A script, not a test
(CI has no GPU): run it on both and compare the printed rows.

    python benchmarks/cuda_check.py --device cpu  --json runs/cpu.json
    python benchmarks/cuda_check.py --device cuda --json runs/cuda.json

For the shipped tiny dLLM it evaluates greedy top-k confidence (k = 1 and 4), the Fast-dLLM
threshold and the shipped semi-AR learned policy on `--n` test word problems, in fp32 and (on the
GPU) bf16, and prints accuracy, mean NFE and wall time per point. Greedy fp32 decoding should agree
with the CPU to within a few flipped near-ties; sampled learned policies use the device's own
random stream, so they agree in distribution, not row by row.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--model", default="checkpoints/tiny-dllm")
    ap.add_argument("--policy", default="checkpoints/policies/semiar-a1")
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--dtypes", default="", help="comma list of float32,bfloat16 (default: fp32 on cpu, both on cuda)")
    ap.add_argument("--json", default="", help="write the rows here too")
    args = ap.parse_args(argv)

    import torch

    from training.evaluate import evaluate_point
    from training.tasks import get_task
    from unmasker import load_dllm
    from unmasker.policies import ConfidenceThreshold, LearnedPolicy, TopKConfidence
    from unmasker.sampler import SamplerConfig

    task = get_task("word_problems")
    problems = task.problems("test", args.n)
    cfg = SamplerConfig(gen_length=task.gen_length, block_length=task.block_length)
    dtypes = args.dtypes.split(",") if args.dtypes else (["float32"] if args.device == "cpu" else ["float32", "bfloat16"])
    rows = []
    for dtype in dtypes:
        dllm = load_dllm(os.path.join(REPO_ROOT, args.model), device=args.device, dtype=getattr(torch, dtype))
        policies = {"top_k k=1": TopKConfidence(k=1), "top_k k=4": TopKConfidence(k=4),
                    "threshold 0.9": ConfidenceThreshold(threshold=0.9),
                    "learned semiar-a1": LearnedPolicy(checkpoint=os.path.join(REPO_ROOT, args.policy))}
        for name, policy in policies.items():
            point = evaluate_point(dllm, task, problems, policy, cfg, seed=0, batch_size=args.batch)
            row = {"device": args.device, "dtype": dtype, "policy": name, "n": args.n,
                   "accuracy": point["accuracy"], "mean_nfe": round(point["mean_nfe"], 3),
                   "wall_seconds": round(point["wall_seconds"], 2)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
