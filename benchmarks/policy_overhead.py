"""How much a learned unmasking policy adds to a denoising step: one dLLM forward pass against one
`ConfidencePolicyNet` forward pass on the same batch and generation length (paper 2.4: a ~300K
parameter policy next to an 8B dLLM). A script, not a test:

    python benchmarks/policy_overhead.py                            # tiny dLLM, batch 16, L = 48
    python benchmarks/policy_overhead.py --gen-length 256 --batch 1 # LLaDA-like canvas
    python benchmarks/policy_overhead.py --model GSAI-ML/LLaDA-8B-Instruct --device cuda

Both timings are medians over `--repeats` interleaved runs after `--warmup` runs, under
torch.no_grad, with CUDA synchronised around each run. The policy sees only the L generation positions; the dLLM sees
the prompt plus the canvas.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import torch

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)  # run as a plain script from anywhere

from unmasker import DEFAULT_MODEL, load_dllm  # noqa: E402
from unmasker.policies.learned import ConfidencePolicyNet, load_policy_net  # noqa: E402

SAMPLE_PROMPT = "Mia has 12 apples . She buys 3 more . Then she gives 4 to Tom . How many apples does Mia have now ?"


def time_interleaved(fns, device: torch.device, warmup: int, repeats: int) -> list[list[float]]:
    """Per function, `repeats` wall times in ms. The functions take turns within each repeat, so
    load from other processes on a shared machine hits them alike and the ratio stays fair."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = [[] for _ in fns]
    with torch.no_grad():
        for _ in range(warmup):
            for fn in fns:
                fn()
        sync()
        for _ in range(repeats):
            for fn, out in zip(fns, times):
                start = time.perf_counter()
                fn()
                sync()
                out.append(1000 * (time.perf_counter() - start))
    return times


def default_model(tmp: str) -> tuple[str, str]:
    """The trained tiny dLLM if it is there, else a tiny random one built in `tmp`."""
    folder = os.path.join(REPO_ROOT, DEFAULT_MODEL)
    if all(os.path.isfile(os.path.join(folder, f)) for f in ("config.json", "model.safetensors")):
        return folder, DEFAULT_MODEL
    from training.tiny import build_tiny_model

    return build_tiny_model(os.path.join(tmp, "tiny-random")), "tiny random model (no trained checkpoint found)"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None,
                    help=f"dLLM folder or hub id (default {DEFAULT_MODEL} if trained, else a tiny random model)")
    ap.add_argument("--policy", default=None, help="policy checkpoint folder (default: a freshly initialised policy)")
    ap.add_argument("--batch", type=int, default=16, help="batch size B (default 16)")
    ap.add_argument("--gen-length", type=int, default=48, help="generation length L (default 48)")
    ap.add_argument("--prompt-length", type=int, default=32,
                    help="prompt tokens before the canvas, clipped to fit the model's positions (default 32)")
    ap.add_argument("--repeats", type=int, default=20, help="timed runs; the median is reported (default 20)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed runs first (default 3)")
    ap.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch CPU threads (default 0 = torch's choice; 1 is steadier on a busy machine)")
    args = ap.parse_args(argv)
    for name in ("batch", "gen_length", "repeats"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.prompt_length < 0 or args.warmup < 0 or args.threads < 0:
        ap.error("--prompt-length, --warmup and --threads must be >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        path, label = (args.model, args.model) if args.model else default_model(tmp)
        dllm = load_dllm(path, device=args.device)
    device = dllm.device
    B, L = args.batch, args.gen_length
    P = args.prompt_length
    note = ""
    if dllm.max_positions is not None and P + L > dllm.max_positions:
        if L > dllm.max_positions:
            ap.error(f"--gen-length {L} exceeds the model's {dllm.max_positions} positions")
        P, note = dllm.max_positions - L, f" (clipped from {args.prompt_length}: the model has {dllm.max_positions} positions)"

    # Canvas: a real prompt tiled to P tokens, then L masks, exactly what the sampler feeds the dLLM.
    text_ids = dllm.tokenizer(SAMPLE_PROMPT, add_special_tokens=False)["input_ids"]
    prompt = (text_ids * (P // max(len(text_ids), 1) + 1))[:P]
    row = torch.tensor(prompt + [dllm.mask_id] * L, dtype=torch.long)
    ids = row.expand(B, -1).contiguous().to(device)
    attn = torch.ones_like(ids)

    net = load_policy_net(args.policy) if args.policy else ConfidencePolicyNet()
    net = net.to(device).eval()
    g = torch.Generator().manual_seed(0)
    confidence = torch.rand(B, L, generator=g).to(device)
    masked = (torch.rand(B, L, generator=g) < 0.5).to(device)
    t = torch.rand(B, generator=g).to(device)

    dllm_t, policy_t = time_interleaved([lambda: dllm.logits(ids, attn), lambda: net(confidence, masked, t)],
                                        device, args.warmup, args.repeats)
    dllm_ms, policy_ms = statistics.median(dllm_t), statistics.median(policy_t)

    n_dllm = sum(p.numel() for p in dllm.model.parameters())
    n_policy = sum(p.numel() for p in net.parameters())
    dtype = next(dllm.model.parameters()).dtype
    threads = f", {torch.get_num_threads()} threads" if device.type == "cpu" else ""
    print(f"dLLM:    {label} ({dllm.backend}, {n_dllm:,} params, {dtype}) on {device}{threads}")
    print(f"policy:  ConfidencePolicyNet ({n_policy:,} params, {next(net.parameters()).dtype})")
    print(f"shape:   batch {B}, prompt {P}{note} + gen {L} = {P + L} dLLM positions; policy sees {L}")
    print(f"timing:  median (min) of {args.repeats} interleaved runs after {args.warmup} warmup, torch.no_grad")
    print(f"dLLM forward:   {dllm_ms:9.3f} ms  ({min(dllm_t):.3f})")
    print(f"policy forward: {policy_ms:9.3f} ms  ({min(policy_t):.3f})")
    print(f"ratio policy / dLLM: {policy_ms / dllm_ms:.3f} ({100 * policy_ms / dllm_ms:.1f}% per step)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
