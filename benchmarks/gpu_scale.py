"""The loop at LLaDA-8B's size on one GPU (issue 24, item 7): a random-weight model with LLaDA-8B's
real config (32 layers, d_model 4096, vocabulary 126,464; Fast-dLLM's model code) in bf16.

Measures, per cache mode:
* a GRPO round (rollouts of the learned policy at its smart init, no fallback, then one
  log-likelihood forward/backward of the policy) for several rollout counts N: peak GPU memory,
  fitted as a + b N, and seconds per sequence (the paper's trainer: ~15 GB + 1.47 GB per sequence);
* the page's time to first step and per step (batch 1, top-5 alternatives, threshold 0.9).
Prints one line per measurement and a JSON summary (--out). No weights are read or written: the
model is built on the meta device and filled with random numbers on the GPU.

    python benchmarks/gpu_scale.py --device cuda --out runs/gpu/scale.json       # LLaDA-8B config
    OMP_NUM_THREADS=1 python benchmarks/gpu_scale.py --small                      # CPU check of the script
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "tests"))

LLADA_8B = {"d_model": 4096, "n_layers": 32, "n_heads": 32, "n_kv_heads": 32, "mlp_hidden_size": 12288}


def build_random_llada(dims: dict, device: torch.device, dtype: torch.dtype):
    """A DLLM over LLaDA's real code with `dims`, random weights made on `device`."""
    import torch._dynamo
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    import test_conformance as tc
    from unmasker.dllm import DLLM, adapt_remote_code

    torch._dynamo.config.disable = True
    folder = tc.build_llada_folder(Path(tempfile.mkdtemp()) / "LLaDA-8B-Instruct")  # tiny weights, real code
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    for k, v in dims.items():
        setattr(config, k, v)
    adapt_remote_code(config, str(folder))
    with torch.device("meta"):
        model = AutoModel.from_config(config, trust_remote_code=True)
    model = model.to_empty(device=device).to(dtype).eval().requires_grad_(False)
    g = torch.Generator(device=device).manual_seed(0)
    active = torch.tensor(sorted(set(range(len(tc.WORDS))) | {tc.LLADA_EOS, tc.LLADA_EOT}), device=device)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            elif name.endswith("ff_out.weight") and p.shape[0] > 100_000:
                p.zero_()  # the output head is zero but for a few tokens: peaked, varied confidences
                rows = torch.randn((len(active), p.shape[1]), generator=g, device=device)
                p[active] = (rows * (8.0 / p.shape[1] ** 0.5)).to(dtype)
            elif p.shape[0] > 100_000:
                p.normal_(0.0, 1.0, generator=g)
            else:
                p.normal_(0.0, 1.0 / p.shape[1] ** 0.5, generator=g)
    tok = AutoTokenizer.from_pretrained(folder)
    return DLLM(model=model, tokenizer=tok, mask_id=tc.LLADA_MASK, eos_ids=(tc.LLADA_EOS, tc.LLADA_EOT),
                pad_id=tc.LLADA_EOS, backend="llada", name="random LLaDA", max_positions=4096)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _peak_reset(device):
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()


def _peak(device) -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")


def grpo_round(dllm, n: int, prompt_len: int, cfg, device) -> dict:
    from training import grpo
    from unmasker.policies.learned import LearnedPolicy

    policy = LearnedPolicy(seed=0, fallback=False)
    net = policy.net.to(device).train()
    ids = torch.randint(0, 30, (n, prompt_len), generator=torch.Generator().manual_seed(n))
    _peak_reset(device)
    start = time.perf_counter()
    batch = grpo.rollout(dllm, policy, (ids, torch.ones_like(ids)), cfg, seed=n)
    reward = grpo.multiplicative_reward(torch.ones(n), batch.nfe, cfg.gen_length, 1.0)
    adv = grpo.group_advantages(reward, n)
    logp, _ = grpo.sequence_log_probs(net, batch)
    grpo.clipped_surrogate_loss(logp, logp.detach(), adv.to(logp.device), batch.active.to(logp.device), 0.5).backward()
    _sync(device)
    seconds = time.perf_counter() - start
    return {"n": n, "peak_gib": _peak(device), "seconds": seconds, "s_per_seq": seconds / n,
            "mean_nfe": float(batch.nfe.float().mean())}


def page_run(dllm, prompt_len: int, cfg, device) -> dict:
    from unmasker import build_policy, iter_unmask

    ids = torch.randint(0, 30, (1, prompt_len), generator=torch.Generator().manual_seed(1))
    times, start = [], time.perf_counter()
    for _ in iter_unmask(dllm, build_policy("confidence_threshold", threshold=0.9), (ids, torch.ones_like(ids)), cfg):
        _sync(device)
        times.append(time.perf_counter() - start)
    per = [b - a for a, b in zip(times, times[1:])]
    return {"first_step_s": times[0], "per_step_s": statistics.median(per) if per else float("nan"),
            "steps": len(times)}


def fit(points) -> tuple[float, float]:
    """Least squares a + b n."""
    xs, ys = [p["n"] for p in points], [p["peak_gib"] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / max(sum((x - mx) ** 2 for x in xs), 1e-12)
    return my - b * mx, b


def main(argv=None) -> int:
    from unmasker import SamplerConfig

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--small", action="store_true", help="tiny dims and lengths (a CPU check of the script)")
    p.add_argument("--sequences", default="4,8,16", help="rollout counts N for the memory fit (default 4,8,16)")
    p.add_argument("--caches", default="none,dual", help="cache modes (default none,dual)")
    p.add_argument("--gen", type=int, default=256)
    p.add_argument("--block", type=int, default=32)
    p.add_argument("--prompt", type=int, default=32)
    p.add_argument("--out", default="", help="write the JSON summary here")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    small = {"d_model": 64, "n_layers": 2, "n_heads": 2, "n_kv_heads": 2, "mlp_hidden_size": 128}
    dims = small if args.small else LLADA_8B
    gen, block, prompt = (32, 8, 8) if args.small else (args.gen, args.block, args.prompt)
    ns = [2, 4] if args.small else [int(x) for x in args.sequences.split(",")]
    t0 = time.perf_counter()
    dllm = build_random_llada(dims, device, torch.bfloat16)
    _sync(device)
    model_gib = torch.cuda.memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    print(f"random LLaDA {dims} on {device} (bf16): built in {time.perf_counter() - t0:.0f} s, "
          f"{model_gib:.1f} GiB; prompt {prompt}, gen {gen}, blocks of {block}")
    summary = {"dims": dims, "device": str(device), "model_gib": model_gib, "gen": gen, "block": block,
               "prompt": prompt, "modes": {}}
    for mode in args.caches.split(","):
        cfg = SamplerConfig(gen, block, cache=mode)
        page_run(dllm, prompt, SamplerConfig(min(gen, 2 * block), block, cache=mode), device)  # warm-up
        page = page_run(dllm, prompt, SamplerConfig(gen, block, top_alternatives=5, cache=mode), device)
        print(f"[{mode}] page: first step {page['first_step_s']:.2f} s, then {page['per_step_s'] * 1000:.0f} ms per "
              f"step ({page['steps']} steps)")
        points = []
        for n in ns:
            r = grpo_round(dllm, n, prompt, cfg, device)
            points.append(r)
            print(f"[{mode}] GRPO round, N = {n}: peak {r['peak_gib']:.2f} GiB, {r['s_per_seq']:.2f} s per sequence, "
                  f"mean NFE {r['mean_nfe']:.1f}")
        a, b = fit(points) if len(points) > 1 else (float("nan"), float("nan"))
        print(f"[{mode}] peak memory = {a:.2f} GiB + {b:.3f} GiB x sequences (paper trainer: ~15 GB + 1.47 GB)")
        summary["modes"][mode] = {"page": page, "grpo": points, "fit_a_gib": a, "fit_b_gib": b}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
