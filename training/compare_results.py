"""Compare two results JSONs point by point (same key = same task, model hash, policy hash, params,
lengths, seed): did a rerun of the report reproduce it?

    python -m training.report --out runs/report-rerun --threads 2
    python -m training.compare_results docs/results.json runs/report-rerun/results.json
"""

from __future__ import annotations

import argparse
import json

FIELDS = ("accuracy", "mean_nfe")


def load_points(path: str) -> dict[str, dict]:
    with open(path) as f:
        data = json.load(f)
    points = data["points"] if isinstance(data, dict) else data
    return {p["key"]: p for p in points}


def compare(a: dict[str, dict], b: dict[str, dict]) -> dict:
    """Shared keys, keys only in one side, and per field the largest absolute difference and the
    number of points that differ at all."""
    shared = sorted(set(a) & set(b))
    out = {"shared": len(shared), "only_a": len(set(a) - set(b)), "only_b": len(set(b) - set(a))}
    for field in FIELDS:
        diffs = [abs(a[k][field] - b[k][field]) for k in shared]
        out[field] = {"max_abs_diff": max(diffs, default=0.0), "differing": sum(d > 1e-9 for d in diffs)}
    worst = max(shared, key=lambda k: abs(a[k]["accuracy"] - b[k]["accuracy"]), default=None)
    if worst is not None:
        p = a[worst]
        out["worst"] = {"task": p["task"], "policy": p["policy"], "params": p["params"],
                        "block_length": p["block_length"], "seed": p["seed"],
                        "accuracy": [a[worst]["accuracy"], b[worst]["accuracy"]]}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a")
    ap.add_argument("b")
    args = ap.parse_args(argv)
    print(json.dumps(compare(load_points(args.a), load_points(args.b)), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
