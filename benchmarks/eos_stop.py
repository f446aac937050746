"""End-of-text early stop (Learn2PD's EoTP) on the embedded model: accuracy, forward passes and
canvas positions per second with `eos_early_stop` off and on, the same problems, policies and
seeds (issue 24). A script, not a test; greedy tokens, so the answers up to the first EOS can
differ only where a filled EOS changes what later blocks see.

    OMP_NUM_THREADS=1 python benchmarks/eos_stop.py                  # ~6 min on a busy 2-core CPU
    python benchmarks/eos_stop.py --n 500 --task word_problems --device cuda
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from training.tasks import get_task  # noqa: E402
from unmasker import SamplerConfig, build_policy, generate, load_dllm  # noqa: E402

POLICIES = {"top-k k=1": ("top_k_confidence", {"k": 1}), "threshold 0.9": ("confidence_threshold", {"threshold": 0.9})}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(REPO_ROOT / "checkpoints" / "tiny-dllm"))
    p.add_argument("--task", default="word_problems")
    p.add_argument("--n", type=int, default=100, help="test problems (default 100)")
    p.add_argument("--batch", type=int, default=100, help="problems per generate() call (default 100)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    dllm = load_dllm(args.model, device=args.device)
    task = get_task(args.task)
    problems = task.problems("test", args.n)
    base = SamplerConfig(gen_length=task.gen_length, block_length=task.block_length)
    print(f"{dllm.name} on {args.n} {args.task} test problems, L = {base.gen_length}, blocks of {base.block_length}, "
          f"batch {args.batch}, {args.device}")
    for label, (name, params) in POLICIES.items():
        for stop in (False, True):
            cfg = dataclasses.replace(base, eos_early_stop=stop)
            correct, nfe, passes, start = 0, 0, 0, time.perf_counter()
            for i in range(0, len(problems), args.batch):
                chunk = problems[i:i + args.batch]
                traj = generate(dllm, build_policy(name, **params), [q.prompt for q in chunk], cfg, seed=i)
                correct += sum(bool(task.verify(t, q)) for t, q in zip(traj.texts, chunk))
                nfe += int(traj.nfe.sum())
                passes += int(traj.unmask_step.max()) + 1  # batch-level forward passes
            seconds = time.perf_counter() - start
            if torch.cuda.is_available() and args.device.startswith("cuda"):
                torch.cuda.synchronize()
            print(f"{label:14s} eos_early_stop={str(stop):5s}  accuracy {100 * correct / len(problems):5.1f}%  "
                  f"mean NFE {nfe / len(problems):5.2f}  batch passes {passes:4d}  "
                  f"{len(problems) * base.gen_length / seconds:7.0f} positions/s  ({seconds:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
