"""Per-forward-pass time and peak memory: our loop with each cache mode against LLaDA's `generate`
and Fast-dLLM's cached loops, on the same random-weight LLaDA (issue 24). A script, not a test.

The model is LLaDA's real code (Fast-dLLM's copy in ../shared/thirdparty/fast-dllm, or
UNMASKER_FAST_DLLM) with random weights, the real vocabulary (126,464) and a small body
(--d-model, --layers). Every loop decodes the same random prompt greedily with top-k confidence,
the same tokens per step (LLaDA's schedule), so all of them make the same number of passes.
Each variant runs in a fresh subprocess; time is the run's wall time over its passes (one
warm-up run first), peak memory is the resident-set high-water mark above the loaded model
(CPU) or torch.cuda.max_memory_allocated above it (CUDA).

    OMP_NUM_THREADS=1 python benchmarks/cache_speed.py                   # CPU, ~2 minutes
    python benchmarks/cache_speed.py --device cuda --d-model 4096 --layers 32 --gen 256 --block 32
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

VARIANTS = ("ours cache=none", "ours cache=prefix", "ours cache=dual",
            "LLaDA generate", "Fast-dLLM prefix cache", "Fast-dLLM dual cache")


def build_folder(out: Path, d_model: int, layers: int) -> Path:
    """The conformance tests' tiny LLaDA folder, resized (tests/test_conformance.py)."""
    sys.path.insert(0, str(REPO_ROOT / "tests"))
    import test_conformance as tc

    if not (tc.THIRDPARTY / "llada").is_dir():
        sys.exit(f"the LLaDA model code is not at {tc.THIRDPARTY} (set UNMASKER_FAST_DLLM)")
    folder = tc.build_llada_folder(out)
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(d_model=d_model, n_layers=layers, n_heads=max(1, d_model // 64), n_kv_heads=max(1, d_model // 64),
               mlp_hidden_size=4 * d_model)
    (folder / "config.json").write_text(json.dumps(cfg, indent=1))
    tc._random_weights(folder, set(range(len(tc.WORDS))) | {tc.LLADA_EOS, tc.LLADA_EOT}, seed=0)
    return folder


def fast_dllm_module(model):
    """Fast-dLLM's llada/generate.py, its model import pointed at the loaded model's module."""
    sys.path.insert(0, str(REPO_ROOT / "tests"))
    import test_conformance as tc

    stub = types.ModuleType("model")
    stub.modeling_llada = sys.modules[type(model).__module__]
    sys.modules.update({"model": stub, "model.modeling_llada": stub.modeling_llada})
    spec = importlib.util.spec_from_file_location("fast_dllm_generate", tc.THIRDPARTY / "llada" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _hwm_or_rss(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(key)


def child(spec: dict) -> dict:
    import torch
    import torch._dynamo

    torch._dynamo.config.disable = True  # Fast-dLLM's code compiles attention; eager for every loop alike
    from unmasker import SamplerConfig, build_policy, generate, load_dllm

    dev = torch.device(spec["device"])
    dtype = torch.bfloat16 if spec["bf16"] else torch.float32
    dllm = load_dllm(spec["folder"], device=str(dev), dtype=dtype, chat=False)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 30, (1, spec["prompt"]), generator=g)
    L, BL, k = spec["gen"], spec["block"], spec["k"]
    name = spec["variant"]

    if name.startswith("ours"):
        cfg = SamplerConfig(L, BL, cache=name.split("=")[1])
        policy = build_policy("top_k_confidence", k=k)

        def run():
            t = generate(dllm, policy, (ids, torch.ones_like(ids)), cfg)
            return int(t.nfe[0])
    else:
        fd = fast_dllm_module(dllm.model)
        fn = {"LLaDA generate": fd.generate, "Fast-dLLM prefix cache": fd.generate_with_prefix_cache,
              "Fast-dLLM dual cache": fd.generate_with_dual_cache}[name]

        def run():
            with torch.no_grad():
                _, nfe = fn(dllm.model, ids.to(dev), steps=L // k, gen_length=L, block_length=BL,
                            temperature=0.0, remasking="low_confidence", mask_id=dllm.mask_id)
            return int(nfe)

    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    run()  # warm-up
    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        base = _hwm_or_rss("VmRSS")
    start = time.perf_counter()
    nfe = run()
    sync()
    seconds = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated() if dev.type == "cuda" else _hwm_or_rss("VmHWM")) - base
    return {"nfe": nfe, "seconds": seconds, "peak_bytes": peak}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--d-model", type=int, default=256, help="hidden size (default 256; LLaDA-8B: 4096)")
    p.add_argument("--layers", type=int, default=4, help="layers (default 4; LLaDA-8B: 32)")
    p.add_argument("--prompt", type=int, default=64, help="prompt tokens (default 64)")
    p.add_argument("--gen", type=int, default=128, help="generation length (default 128)")
    p.add_argument("--block", type=int, default=32, help="block length (default 32)")
    p.add_argument("--k", type=int, default=4, help="tokens per step (default 4)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--bf16", action="store_true", help="bf16 weights (default fp32)")
    p.add_argument("--only", default="", help="run only variants whose name contains this")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_folder(Path(tmp) / "LLaDA-8B-Instruct", args.d_model, args.layers)
        print(f"random LLaDA: d_model {args.d_model}, {args.layers} layers, vocabulary 126464, device {args.device}, "
              f"{'bf16' if args.bf16 else 'fp32'}; prompt {args.prompt}, gen {args.gen}, blocks of {args.block}, "
              f"{args.k} tokens per step, batch 1")
        base = {"folder": str(folder), "device": args.device, "bf16": args.bf16, "prompt": args.prompt,
                "gen": args.gen, "block": args.block, "k": args.k}
        env = {**os.environ, "TORCHDYNAMO_DISABLE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
        results = {}
        for name in VARIANTS:
            if args.only and args.only not in name:
                continue
            out = subprocess.run([sys.executable, __file__, "--child", json.dumps({**base, "variant": name})],
                                 capture_output=True, text=True, env=env)
            if out.returncode:
                print(f"{name:24s} failed: {out.stderr.strip().splitlines()[-1:]}")
                continue
            r = results[name] = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{name:24s} {1000 * r['seconds'] / r['nfe']:8.1f} ms per pass  ({r['nfe']} passes)   "
                  f"peak +{r['peak_bytes'] / 2**20:7.1f} MiB")
        for ours, ref in (("prefix", "Fast-dLLM prefix cache"), ("dual", "Fast-dLLM dual cache"),
                          ("none", "LLaDA generate")):
            a, b = results.get(f"ours cache={ours}"), results.get(ref)
            if a and b:
                ratio = (a["seconds"] / a["nfe"]) / (b["seconds"] / b["nfe"])
                print(f"ours cache={ours} / {ref}: {ratio:.2f}x per pass")
    return 0


if __name__ == "__main__":
    sys.exit(main())
