"""Command line: `python -m unmasker policies` and `python -m unmasker generate ...`.

A thin shell around the library: it parses flags, builds a `SamplerConfig` and a policy from the
registry, loads the dLLM and consumes `generate()`. It owns no sampling logic. Every input error
(unknown policy, bad parameter, bad lengths, empty prompt, missing model) is one line on stderr
and exit status 2, like argparse's own usage errors.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

from . import DEFAULT_MODEL

EXIT_USAGE = 2
EXIT_FAILURE = 1  # the run itself failed (out of memory)
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class CLIError(Exception):
    """Bad user input, reported as one line on stderr with exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage block) so every error looks the same."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from .sampler import SamplerConfig

    parser = _Parser(
        prog="python -m unmasker",
        description="Sample from a masked diffusion LM with a pluggable unmasking policy.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    pol = sub.add_parser("policies", help="list the registered policies and their parameters",
                         description="List the registered unmasking policies and their parameters.")
    pol.set_defaults(func=cmd_policies)

    gen = sub.add_parser("generate", help="generate a response to one prompt",
                         description="Generate a response to one prompt and report the text and NFE.")
    gen.add_argument("prompt", help="the prompt text (quote it)")
    gen.add_argument("--model", default=DEFAULT_MODEL,
                     help=f"dLLM folder or hub id (default {DEFAULT_MODEL}; a relative folder not found in the "
                          "current directory is looked up in the repository root)")
    gen.add_argument("--policy", default="top_k_confidence",
                     help="unmasking policy name (see `python -m unmasker policies`; default top_k_confidence)")
    gen.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                     help="policy parameter, repeatable, e.g. --param k=2 or --param threshold=0.9")
    # The sampler flags come from SamplerConfig itself: one source for names, defaults and help.
    for f in dataclasses.fields(SamplerConfig):
        flag = "--" + f.name.replace("_", "-")
        if isinstance(f.default, bool):
            gen.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=f.default,
                             help=f"{f.metadata.get('help', f.name)} (default {f.default})")
            continue
        gen.add_argument(flag, dest=f.name, type=type(f.default), default=f.default,
                         help=f"{f.metadata.get('help', f.name)} (default {f.default})")
    gen.add_argument("--generation-prefix", default="",
                     help='text the response starts with, after the chat template (the paper uses "<reasoning>" for LLaDA)')
    gen.add_argument("--seed", type=int, default=0, help="seed for token sampling and random policies (default 0)")
    gen.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: cuda if available)")
    gen.add_argument("--steps", action="store_true",
                     help="also print each step: the positions committed and their tokens")
    gen.add_argument("--json", action="store_true",
                     help="print exactly one JSON object (text, nfe, steps, policy, params, still_masked, elapsed)")
    gen.set_defaults(func=cmd_generate)

    # `python -m unmasker --help` documents every flag of every command.
    parser.epilog = "\n".join(
        f"command {name!r}:\n" + p.format_help() for name, p in (("policies", pol), ("generate", gen))
    )
    return parser


def cmd_policies(args) -> int:
    from .policies import describe_policies

    print(describe_policies())
    return 0


def resolve_model(path: str) -> str:
    """A relative folder missing from the cwd is looked up in the repository root (parent of the
    package), so the default works from any directory. Anything else is returned unchanged."""
    path = os.path.expanduser(path)
    if os.path.isabs(path) or os.path.exists(path):
        return path
    candidate = os.path.join(REPO_ROOT, path)
    return candidate if os.path.exists(candidate) else path


def _looks_like_folder(path: str) -> bool:
    # 'owner/name' may be a hub id; anything absolute, dotted, deeper or the default is a folder.
    return (os.path.isabs(path) or path.startswith((".", "~")) or path.count("/") != 1
            or path == DEFAULT_MODEL)


def cmd_generate(args) -> int:
    from .loading import load_dllm
    from .policies import build_policy, parse_params, policy_params
    from .sampler import SamplerConfig, generate

    if not args.prompt.strip():
        raise CLIError("the prompt is empty")
    # Validate everything cheap before loading the model.
    config = SamplerConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(SamplerConfig)})
    params = parse_params(args.param)
    policy = build_policy(args.policy, **params)
    model = resolve_model(args.model)
    if not os.path.exists(model) and _looks_like_folder(args.model):
        hint = " (train it with `python -m training.train_dllm`)" if args.model == DEFAULT_MODEL else ""
        raise CLIError(f"model folder {args.model!r} not found{hint}")
    if os.path.isdir(model) and not os.path.isfile(os.path.join(model, "config.json")):
        hint = " (still training? `python -m training.train_dllm`)" if args.model == DEFAULT_MODEL else ""
        raise CLIError(f"model folder {model!r} has no config.json; not a model folder{hint}")
    _quiet_transformers()
    dllm = load_dllm(model, device=args.device, generation_prefix=args.generation_prefix)
    unknown = dllm.unknown_words(args.prompt)
    if unknown:  # said before running: the model reads these as its unknown token
        print(f"warning: {dllm.name} does not know {len(unknown)} word(s) of the prompt: {', '.join(unknown)} "
              f"(each is read as {dllm.tokenizer.unk_token}; rephrase for a meaningful answer)", file=sys.stderr)
    traj = generate(dllm, policy, [args.prompt], config, seed=args.seed, keep_steps=True)

    steps = []
    for step in traj.steps:
        pos = step.committed[0].nonzero().flatten().tolist()
        ids = step.tokens[0, pos].tolist()
        record = {"step": step.index, "block": step.block, "nfe": int(step.nfe[0]), "positions": pos,
                  "token_ids": ids, "tokens": dllm.token_strings(ids)}
        if step.top_ids is not None:  # --top-alternatives K: the K most likely tokens per committed position
            record["alternatives"] = [
                [[t, round(float(p), 4)] for t, p in zip(dllm.token_strings(step.top_ids[0, q].tolist()),
                                                          step.top_probs[0, q].tolist())]
                for q in pos
            ]
        steps.append(record)
    result = {
        "text": traj.texts[0],
        "nfe": int(traj.nfe[0]),
        "still_masked": int(traj.still_masked[0]),
        "elapsed": round(traj.elapsed, 4),
        "policy": args.policy,
        "params": {f.name: _jsonable(getattr(policy, f.name)) for f in policy_params(args.policy)},
        "model": dllm.name,
        "config": dataclasses.asdict(config),
        "seed": args.seed,
        "unknown_words": unknown,
        "steps": steps,
    }
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return 0
    if args.steps:
        for s in steps:
            pairs = "  ".join(f"{p}:{t!r}" for p, t in zip(s["positions"], s["tokens"]))
            print(f"step {s['step']:3d}  block {s['block']}  +{len(s['positions'])}  {pairs}")
        print()
    print(result["text"])
    extra = f", {result['still_masked']} still masked" if result["still_masked"] else ""
    print(f"NFE {result['nfe']} / {config.gen_length}{extra}  ({args.policy}, {result['elapsed']:.2f}s)")
    return 0


def _jsonable(value):
    return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)


def _quiet_transformers():
    # Weight-loading progress bars on stderr are noise for a CLI (stdout stays clean either way).
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    import torch

    try:
        return args.func(args)
    except torch.OutOfMemoryError:
        print(f"python -m unmasker {args.command}: error: out of memory at --gen-length "
              f"{getattr(args, 'gen_length', '?')}: lower --gen-length or --top-alternatives, or pass "
              "--cache prefix / --cache dual (LLaDA with Fast-dLLM's code), or --device cpu", file=sys.stderr)
        return EXIT_FAILURE
    except (CLIError, ValueError, OSError) as err:
        # DLLMError and every config/policy validation error are ValueErrors with clear messages.
        message = " ".join(str(err).split())
        print(f"python -m unmasker {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE
