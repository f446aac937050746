"""`python app.py`: the demo's command. Parses the flags, loads the model (and the shipped
policies) once, and launches the page: `page.compare` for a masked dLLM, `page.gemma` for
DiffusionGemma. The page itself (handlers, views) is the `page` package; this file only loads
and launches. Nothing is loaded at import time.

    python app.py [--model checkpoints/tiny-dllm] [--policies checkpoints/policies]
                  [--host 127.0.0.1] [--port 7860] [--share] [--device cpu]
                  [--concurrency 2] [--max_queue 32] [--session_ttl 1800] [--max_sessions 128] [--threads N]
                  [--trim_every 60]

Memory stays bounded for a public host: a session's run records expire `session_ttl` seconds
after its last run (Gradio's State time-to-live), and Gradio keeps at most `max_sessions`
sessions (its per-session copy of the page, oldest dropped first); a thread hands the freed heap
back to the OS every `trim_every` seconds; see docs/hosting.md.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from dataclasses import dataclass, field

from page.compare import Resources, ShippedPolicy
from page.gemma import GemmaResources

REPO = os.path.dirname(os.path.abspath(__file__))


@dataclass(frozen=True)
class AppConfig:
    model: str = field(default=os.path.join(REPO, "checkpoints", "tiny-dllm"),
                       metadata={"help": "dLLM folder or hub id (default: the embedded tiny dLLM)"})
    policies: str = field(default=os.path.join(REPO, "checkpoints", "policies"),
                          metadata={"help": "folder of learned-policy checkpoints (one sub-folder each)"})
    host: str = field(default="127.0.0.1", metadata={"help": "interface to listen on (0.0.0.0 for all)"})
    port: int = field(default=7860, metadata={"help": "port to listen on"})
    share: bool = field(default=False, metadata={"help": "also create a public gradio.live link"})
    device: str | None = field(default=None, metadata={"help": "torch device (default: cuda if available)"})
    concurrency: int = field(default=2, metadata={"help": "runs computed at once; more visitors wait in the queue"})
    max_queue: int = field(default=32, metadata={
        "help": "visitors that may wait; beyond it a visitor is told the app is busy and to try again"})
    session_ttl: float = field(default=1800.0, metadata={
        "help": "seconds a session keeps its run records (for scrubbing) after its last run"})
    max_sessions: int = field(default=128, metadata={
        "help": "sessions Gradio keeps in memory (about 0.5 MiB each); the least recently used goes first"})
    threads: int | None = field(default=None, metadata={
        "help": "torch CPU threads (default: CPU cores / concurrency, at least 1)"})
    trim_every: float = field(default=60.0, metadata={
        "help": "seconds between handing freed heap memory back to the OS (glibc malloc_trim; 0: never)"})

    def __post_init__(self):
        for name in ("concurrency", "max_queue", "max_sessions"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}={v!r}: must be an integer >= 1")
        if not (isinstance(self.session_ttl, (int, float)) and 0 < self.session_ttl < float("inf")):
            raise ValueError(f"session_ttl={self.session_ttl!r}: must be a finite number of seconds > 0")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(f"threads={self.threads!r}: must be an integer >= 1")
        if not (isinstance(self.trim_every, (int, float)) and 0 <= self.trim_every < float("inf")):
            raise ValueError(f"trim_every={self.trim_every!r}: must be a finite number of seconds >= 0")


# -- loading -------------------------------------------------------------------------------------
def load_policies(folder: str) -> dict[str, ShippedPolicy]:
    """Every sub-folder of `folder` with a card.json; a policy that fails to load is listed with its error."""
    from unmasker.policies.learned import load_policy_net

    out = {}
    if not os.path.isdir(folder):
        return out
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        card_path = os.path.join(path, "card.json")
        if not os.path.isfile(card_path):
            continue
        try:
            with open(card_path) as f:
                card = json.load(f)
        except (OSError, json.JSONDecodeError) as err:
            out[name] = ShippedPolicy(name, path, {}, error=f"card.json: {err}")
            continue
        try:
            out[name] = ShippedPolicy(name, path, card, net=load_policy_net(path))
        except ValueError as err:
            out[name] = ShippedPolicy(name, path, card, error=str(err))
    return out


def task_examples(task) -> list:
    """The page's examples of one family: a test problem of each kind where the family has kinds
    (the everyday word problems: gains, multiplication, sharing, comparisons, totals, ...)."""
    rng = random.Random(f"app-example/{task.name}")
    kinds = () if getattr(task, "heldout", False) else getattr(task, "EXAMPLE_KINDS", ())
    if not kinds:
        return [task.sample(rng, "test")]
    by_kind = {}
    for p in task.problems("test", 300):
        by_kind.setdefault(p.meta["kind"], p)
    return [by_kind[k] for k in kinds if k in by_kind]


def load_resources(cfg: AppConfig) -> Resources:
    """Load the dLLM (raises DLLMError / ValueError with a clear message), policies and examples."""
    import unmasker
    from training.tasks import TASKS, get_task

    dllm = unmasker.load_dllm(cfg.model, device=cfg.device)
    card = {}
    if os.path.isfile(os.path.join(cfg.model, "card.json")):
        with open(os.path.join(cfg.model, "card.json")) as f:
            card = json.load(f)
    tasks = {name: get_task(name) for name in TASKS}
    examples = [p for name in tasks for p in task_examples(tasks[name])]
    # One short warm-up pass so the first user click does not pay for lazy torch initialisation.
    warm = unmasker.build_policy("top_k_confidence", k=4)
    for _ in unmasker.iter_unmask(dllm, warm, [examples[0].prompt], unmasker.SamplerConfig(4, 4), 0):
        pass
    policies = load_policies(cfg.policies)
    for p in policies.values():
        if p.net is not None:
            p.net.to(dllm.device)  # once here, not lazily by concurrent runs
    return Resources(dllm, policies, cfg.policies, tasks, examples, card)


def load_gemma_resources(model: str, device: str | None = None) -> GemmaResources:
    """Load a DiffusionGemma and the page's examples (one test problem per task family)."""
    import unmasker
    from training.tasks import TASKS, get_task
    from unmasker.gemma import EntropyBound, GemmaSampling

    gemma = unmasker.load_dllm(model, device=device)
    # One short warm-up run so the first click does not pay for lazy torch initialisation.
    gemma.generate(["warm up"], EntropyBound(), GemmaSampling(max_new_tokens=1, max_denoising_steps=1))
    examples = [get_task(name).sample(random.Random(f"app-example/{name}"), "test").prompt for name in TASKS]
    return GemmaResources(gemma, examples)


def is_gemma_model(model: str) -> bool:
    """Whether `model` (folder or hub id) is a DiffusionGemma, from its config.json alone."""
    from unmasker.loading import DLLMError, model_kind

    try:
        return model_kind(model) == "diffusion_gemma"
    except DLLMError:
        return False


# -- launch --------------------------------------------------------------------------------------
def start_heap_trimmer(every: float) -> bool:
    """Every `every` seconds, hand the heap pages that expired sessions freed back to the OS
    (glibc's malloc_trim). Without it the freed pages stay in the process, fragmented, and RSS
    creeps up with visits although the live data is bounded. False where there is no glibc."""
    import ctypes
    import ctypes.util
    import threading

    if every <= 0:
        return False
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return False

    def loop():
        while True:
            time.sleep(every)
            trim(0)

    threading.Thread(target=loop, name="heap-trimmer", daemon=True).start()
    return True


def parse_args(argv=None) -> AppConfig:
    from transformers import HfArgumentParser

    (cfg,) = HfArgumentParser(AppConfig).parse_args_into_dataclasses(args=argv)
    return cfg


def main(argv=None) -> int:
    cfg = parse_args(argv)
    import gradio as gr

    from page import views
    from unmasker import DLLMError

    theme = gr.themes.Soft(primary_hue="violet", neutral_hue="slate")
    if is_gemma_model(cfg.model):  # DiffusionGemma is not a masked dLLM: its own page
        from page import gemma

        print(f"loading DiffusionGemma from {cfg.model} ...", flush=True)
        try:
            resources = load_gemma_resources(cfg.model, cfg.device)
        except (DLLMError, ValueError, OSError) as err:
            print(f"error: cannot load the dLLM: {err}", file=sys.stderr)
            return 2
        print(f"loaded {resources.gemma.name}; acceptance rules: {list(gemma.RULE_LABELS)}", flush=True)
        gemma.build_demo(resources).queue(default_concurrency_limit=1).launch(
            server_name=cfg.host, server_port=cfg.port, share=cfg.share, theme=theme, css=views.PAGE_CSS)
        return 0
    from page.compare import build_demo

    print(f"loading the dLLM from {cfg.model} ...", flush=True)
    import torch

    # Concurrent runs each use torch's CPU threads; more threads than cores makes every run slower
    # (a 2-strategy run of the embedded model, 2 cores with a training job on one: 31 s with 2
    # threads, 1.4 s with 1).
    torch.set_num_threads(cfg.threads or max(1, (os.cpu_count() or 1) // cfg.concurrency))
    try:
        resources = load_resources(cfg)
    except (DLLMError, ValueError, OSError) as err:
        print(f"error: cannot load the dLLM: {err}\n"
              "Train the embedded model with `python -m training.train_dllm`, or pass --model PATH_OR_HUB_ID.",
              file=sys.stderr)
        return 2
    broken = [p.name for p in resources.policies.values() if p.error]
    print(f"loaded {resources.dllm.name}; learned policies: {sorted(resources.policies) or 'none'}"
          + (f" (unusable: {broken})" if broken else ""), flush=True)
    demo = build_demo(resources, concurrency=cfg.concurrency, session_ttl=cfg.session_ttl)
    start_heap_trimmer(cfg.trim_every)
    # A full queue turns a visitor away at once: the page says "This application is currently busy.
    # Please try again." and gradio_client raises QueueError("Queue is full! Please try again.").
    demo.queue(default_concurrency_limit=1, max_size=cfg.max_queue).launch(
        server_name=cfg.host, server_port=cfg.port, share=cfg.share, state_session_capacity=cfg.max_sessions,
        theme=theme, css=views.PAGE_CSS,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
