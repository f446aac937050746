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

    from training.dllm_card import NAME_WORDS, _words
    from training.tasks import get_task
    from training.tasks.everyday import wrong_facts
    from unmasker import SamplerConfig, build_policy, generate, load_dllm

    if args.threads:
        torch.set_num_threads(args.threads)
    dllm = load_dllm(args.model)
    for fam in args.families.split(","):
        task = get_task(fam)
        ps = task.problems("validation", args.n)
        cfg = SamplerConfig(gen_length=task.gen_length, block_length=task.block_length, eos_early_stop=True)
        right = wrong = invented = 0
        for i in range(0, len(ps), 100):
            chunk = ps[i:i + 100]
            traj = generate(dllm, build_policy("top_k_confidence", k=1), [p.prompt for p in chunk], cfg, seed=i)
            right += sum(task.reward(traj.texts, chunk))
            wrong += sum(bool(wrong_facts(t)) for t in traj.texts)
            invented += sum(bool(_words(t) & NAME_WORDS - _words(p.prompt)) for t, p in zip(traj.texts, chunk))
        n = len(ps)
        print(f"{args.model} {fam} n={n} accuracy={right / n:.3f} wrong_step={wrong / n:.3f} "
              f"invented_name={invented / n:.3f}", flush=True)


if __name__ == "__main__":
    main()
