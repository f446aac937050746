"""Per-family validation numbers of an embedded dLLM (top-k confidence, one token per step,
semi-AR, early stop at EOS): accuracy, the share of answers with a wrong worked step, and the
share naming someone the prompt does not. Validation problems, so a model can be picked on them
without touching the test split the card reports.

    python scripts/dllm_validation.py checkpoints/tiny-dllm [--n 500] [--threads 2]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--families", default="everyday,word_problems,facts,arithmetic")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args(argv)
    import torch

    from training.dllm_card import measure_row
    from unmasker import load_dllm

    if args.threads:
        torch.set_num_threads(args.threads)
    dllm = load_dllm(args.model)
    for fam in args.families.split(","):
        r = measure_row(dllm, fam, "top_k_confidence", {"k": 1}, None, n=args.n, eos_early_stop=True,
                        split="validation")
        print(f"{args.model} {fam} n={r['n']} accuracy={r['accuracy']:.3f} wrong_step={r['wrong_step_share']:.3f} "
              f"invented_name={r['invented_name_share']:.3f}", flush=True)

if __name__ == "__main__":
    main()
