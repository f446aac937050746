"""Extra peak memory and time of one step's features against the logits tensor (issue 24).

LLaDA-8B's scale by default: bf16 logits of batch 8 x (32 prompt + 256) positions, vocabulary
126,464 (556 MiB); the features are computed over the 256 generation positions, as the sampler
does. Each variant runs in a fresh subprocess on the CPU; the peak is the process's resident-set
high-water mark (VmHWM, reset through /proc/self/clear_refs after the logits exist), so it counts
every allocation, torch's included. Prints one line per variant.

    OMP_NUM_THREADS=1 python benchmarks/step_features_memory.py            # ~1 minute
    python benchmarks/step_features_memory.py --batch 2 --vocab 32000      # smaller

On a GPU host, `--device cuda` reads torch.cuda.max_memory_allocated instead.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

VARIANTS = {
    "before (one-shot, everything)": {"old": True},
    "lean, token_prob (top-k, threshold, factor)": {"reads": ["token_prob"]},
    "lean, confidence (learned policy)": {"reads": ["confidence"]},
    "lean, everything (margin + entropy)": {"reads": ["confidence", "token_prob", "margin", "entropy"]},
    "lean, token_prob + top-5 alternatives (page)": {"reads": ["token_prob"], "top_k": 5},
    "lean, token_prob, temperature 0.7": {"reads": ["token_prob"], "temperature": 0.7},
}


def _old(logits, mask_id, temperature, generator):
    """The pre-issue-24 step_features, verbatim (greedy only here: its float64 noise over the whole
    tensor would take ~10 GB at this size)."""
    import torch

    logits = logits.clone() if logits.dtype == torch.float32 else logits.float()
    logits[..., mask_id] = float("-inf")
    probs = torch.softmax(logits, dim=-1)
    proposals = logits.argmax(-1)
    top2 = probs.topk(2, dim=-1).values
    token_prob = probs.gather(-1, proposals[..., None]).squeeze(-1)
    entropy = -(probs * torch.log(probs.clamp(min=1e-30))).sum(-1)
    return probs, proposals, top2[..., 0], token_prob, top2[..., 0] - top2[..., 1], entropy


def _hwm_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def _rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def child(spec: dict) -> dict:
    import torch

    from unmasker.features import step_features

    dev = torch.device(spec["device"])
    logits = torch.randn((spec["batch"], spec["prompt"] + spec["gen"], spec["vocab"]), dtype=torch.bfloat16, device=dev)
    view = logits[:, spec["prompt"]:]
    gen = torch.Generator(device=dev).manual_seed(0)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the high-water mark to the current RSS
        base = _rss_bytes()
    start = time.perf_counter()
    if spec.get("old"):
        out = _old(view, 126336 % spec["vocab"], 0.0, gen)
    else:
        out = step_features(view, 126336 % spec["vocab"], spec.get("temperature", 0.0), gen,
                            frozenset(spec["reads"]), spec.get("top_k", 0))
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated() if dev.type == "cuda" else _hwm_bytes()) - base
    del out
    return {"extra_bytes": peak, "logits_bytes": logits.numel() * logits.element_size(), "seconds": seconds}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=8, help="sequences (default 8)")
    p.add_argument("--prompt", type=int, default=32, help="prompt positions (default 32)")
    p.add_argument("--gen", type=int, default=256, help="generation positions L (default 256)")
    p.add_argument("--vocab", type=int, default=126464, help="vocabulary (default LLaDA's 126,464)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--only", default="", help="run only variants whose name contains this")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    base = {"batch": args.batch, "prompt": args.prompt, "gen": args.gen, "vocab": args.vocab, "device": args.device}
    print(f"logits: bf16 {args.batch} x ({args.prompt} + {args.gen}) x {args.vocab}, features over {args.gen} "
          f"positions, device {args.device}")
    for name, extra in VARIANTS.items():
        if args.only and args.only not in name:
            continue
        spec = {**base, **extra}
        out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True)
        if out.returncode:
            print(f"{name:48s} failed: {out.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        mib = r["extra_bytes"] / 2**20
        print(f"{name:48s} extra peak {mib:8.1f} MiB = {r['extra_bytes'] / r['logits_bytes']:5.2f}x the logits "
              f"({r['logits_bytes'] / 2**20:.0f} MiB)   {r['seconds']:6.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
