"""The demo app under public traffic, driven from outside with gradio_client. A script, not a test:

    python benchmarks/app_hosting.py soak --visits 1000 --every 100    # server RSS over N fresh visitors
    python benchmarks/app_hosting.py load --levels 1 8 32              # C concurrent visitors: latency, throughput
    python benchmarks/app_hosting.py batching --batch 1 2 4 8 16 32    # what batching visitors' forward passes gives

`soak` and `load` start `python app.py` on a free port (the embedded model unless `--model`;
arguments after `--` go to app.py, e.g. `-- --max_sessions 64`) or drive a running one with
`--url` (and `--pid`, its process id, for the RSS column). A visit is what a visitor does: a fresh
gradio_client `Client`, one run of `--strategies` on a test problem of `--task`, then close.
`load` measures, per run, the time from submitting to the first streamed step and to the last
step. `batching` needs no server: it times one dLLM forward pass at the app's shape for several
batch sizes, the upper bound of what batching simultaneous visitors could save.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)  # run as a plain script from anywhere

MIB = 2**20
DEFAULT_STRATEGIES = [{"policy": "confidence_threshold", "params": {"threshold": 0.9}},
                      {"policy": "top_k_confidence", "params": {"k": 4}}]


# -- the server ----------------------------------------------------------------------------------
class Server:
    """`python app.py` in a subprocess on a free port, or an already running app (`url`, `pid`)."""

    def __init__(self, args):
        self.proc = None
        if args.url:
            self.url, self.pid = args.url.rstrip("/") + "/", args.pid
            return
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd = [sys.executable, os.path.join(REPO_ROOT, "app.py"), "--port", str(port), "--device", args.device]
        cmd += ["--model", args.model] if args.model else []
        cmd += args.app_args
        env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
        self.log = open(args.log, "w")
        print("server:", " ".join(cmd[1:]), flush=True)
        self.proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.url, self.pid = f"http://127.0.0.1:{port}/", self.proc.pid
        deadline = time.time() + 300
        while time.time() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"app.py exited with {self.proc.returncode}; see {args.log}")
            try:
                urllib.request.urlopen(self.url, timeout=2)
                return
            except OSError:
                time.sleep(0.5)
        sys.exit(f"app.py did not answer within 300 s; see {args.log}")

    def rss_mib(self) -> float | None:
        if self.pid is None:
            return None
        import psutil

        return psutil.Process(self.pid).memory_info().rss / MIB

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _mib(x: float | None) -> str:
    return "?" if x is None else f"{x:.1f}"


def problems(task: str, n: int, seed: int = 0) -> list:
    from training.tasks import get_task

    t, rng = get_task(task), random.Random(seed)
    return [t.sample(rng, "test") for _ in range(n)]


def run_args(args, problem, seed: int) -> tuple:
    """The `run` endpoint's inputs for one visit."""
    return (problem.prompt, args.gen_length, args.block_length, seed, 0.0, args.strategies)


def check(result, what: str) -> None:
    cols = result[0]
    if isinstance(cols, dict):
        raise RuntimeError(f"{what}: the app answered {cols}")
    if not all(c.get("done") for c in cols if c.get("policy") != "off"):
        raise RuntimeError(f"{what}: unfinished columns in {cols}")


# -- soak ----------------------------------------------------------------------------------------
def soak(args, server: Server) -> None:
    """`--visits` visits, `--parallel` at a time; RSS every `--every` visits and the growth after `--warmup`."""
    from gradio_client import Client

    todo = list(enumerate(problems(args.task, args.visits)))
    lock, done, errors = threading.Lock(), [0], []
    rss = {0: server.rss_mib()}
    start = time.perf_counter()
    print(f"{'visits':>7} {'RSS MiB':>8} {'visits/s':>8}", flush=True)
    print(f"{0:>7} {_mib(rss[0]):>8} {'':>8}", flush=True)

    def worker():
        while True:
            with lock:
                if not todo or errors:
                    return
                i, problem = todo.pop(0)
            try:
                client = Client(server.url, verbose=False)
                check(client.predict(*run_args(args, problem, i), api_name="/run"), f"visit {i}")
                client.close()
            except Exception as err:  # noqa: BLE001 -- reported below, stops the soak
                errors.append(f"visit {i}: {type(err).__name__}: {err}")
                return
            with lock:
                done[0] += 1
                n = done[0]
                if n % args.every == 0 or n == args.visits:
                    rss[n] = server.rss_mib()
                    print(f"{n:>7} {_mib(rss[n]):>8} {n / (time.perf_counter() - start):>8.2f}", flush=True)

    threads = [threading.Thread(target=worker) for _ in range(args.parallel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        sys.exit("soak stopped: " + errors[0])
    if rss[0] is None:
        return
    warm = max(k for k in rss if k <= args.warmup)
    last = max(rss)
    growth = rss[last] - rss[warm]
    print(f"\nRSS {rss[0]:.1f} MiB at start, {rss[warm]:.1f} after {warm} visits (warm-up), {rss[last]:.1f} after "
          f"{last}: {growth:+.1f} MiB over the last {last - warm} visits ({growth * 1024 / max(1, last - warm):+.1f} "
          f"KiB per visit); {last / (time.perf_counter() - start):.2f} visits/s", flush=True)


# -- load ----------------------------------------------------------------------------------------
def load(args, server: Server) -> None:
    """For each C in `--levels`: C visitors, each with its own client, sharing `--runs` runs, each
    visitor's back to back. One thread watches every job (10 ms tick), so 32 visitors do not mean 32
    busy-polling threads."""
    from gradio_client import Client
    from gradio_client.utils import QueueError

    pool = problems(args.task, 64)
    # Warm-up (the first run pays for lazy initialisation), then the levels.
    check(Client(server.url, verbose=False).predict(*run_args(args, pool[0], 0), api_name="/run"), "warm-up")
    print(f"{'C':>3} {'runs':>5} {'busy':>5} {'wall s':>7} {'runs/s':>7} {'first p50':>9} {'first p95':>9} "
          f"{'last p50':>8} {'last p95':>8}   (seconds; RSS MiB)", flush=True)
    for c in args.levels:
        clients = [Client(server.url, verbose=False) for _ in range(c)]
        left = [args.runs // c + (v < args.runs % c) for v in range(c)]
        jobs: dict[int, tuple] = {}  # visitor -> (job, submitted at, first step at)
        first, last, busy, submitted = [], [], 0, [0]
        start = time.perf_counter()

        def submit(v):
            i = submitted[0] = submitted[0] + 1
            jobs[v] = (clients[v].submit(*run_args(args, pool[i % len(pool)], i), api_name="/run"),
                       time.perf_counter(), None)
            left[v] -= 1

        for v in range(c):
            if left[v]:
                submit(v)
        while jobs:
            time.sleep(0.01)
            for v, (job, t0, t1) in list(jobs.items()):
                now = time.perf_counter()
                if t1 is None and job.outputs():
                    jobs[v] = (job, t0, now)
                    t1 = now
                if job.done():
                    del jobs[v]
                    try:
                        check(job.result(), f"visitor {v}")
                        first.append((t1 or now) - t0)
                        last.append(now - t0)
                    except QueueError:
                        busy += 1
                    if left[v]:
                        submit(v)
        wall = time.perf_counter() - start
        for cl in clients:
            cl.close()
        q = (lambda xs, p: statistics.quantiles(xs, n=100, method="inclusive")[p - 1] if len(xs) > 1 else xs[0])
        print(f"{c:>3} {len(last):>5} {busy:>5} {wall:>7.1f} {len(last) / wall:>7.2f} {q(first, 50):>9.2f} "
              f"{q(first, 95):>9.2f} {q(last, 50):>8.2f} {q(last, 95):>8.2f}   {_mib(server.rss_mib())}", flush=True)


# -- batching ------------------------------------------------------------------------------------
def batching(args) -> None:
    """One forward pass of the dLLM at the app's shape (a test prompt + `--gen-length` masks) per
    batch size: ms per pass and per visitor. Batching simultaneous visitors pays off only as far as
    the per-visitor time falls."""
    import torch

    from unmasker import DEFAULT_MODEL, load_dllm

    torch.set_num_threads(args.threads)
    dllm = load_dllm(args.model or os.path.join(REPO_ROOT, DEFAULT_MODEL), device=args.device)
    prompts = [p.prompt for p in problems(args.task, max(args.batch))]
    print(f"model {dllm.name}, {args.threads} thread(s), device {dllm.device}, L = {args.gen_length}; "
          f"median of {args.repeats} passes", flush=True)
    print(f"{'batch':>5} {'ms/pass':>8} {'ms/visitor':>10} {'vs batch 1':>10}", flush=True)
    base = None
    for b in args.batch:
        ids, att = dllm.encode(prompts[:b])
        x = torch.cat([ids, torch.full((b, args.gen_length), dllm.mask_id)], 1).to(dllm.device)
        a = torch.cat([att, torch.ones((b, args.gen_length), dtype=att.dtype)], 1).to(dllm.device)
        times = []
        with torch.no_grad():
            for r in range(args.repeats + 3):
                t0 = time.perf_counter()
                dllm.logits(x, a)
                if dllm.device.type == "cuda":
                    torch.cuda.synchronize()
                if r >= 3:  # 3 warm-up passes
                    times.append(1000 * (time.perf_counter() - t0))
        ms = statistics.median(times)
        base = base or ms
        print(f"{b:>5} {ms:>8.2f} {ms / b:>10.2f} {base / (ms / b):>9.2f}x", flush=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", default=None, help="dLLM folder or hub id (default: the embedded model)")
    common.add_argument("--device", default="cpu", help="torch device")
    common.add_argument("--task", default="word_problems", help="task family the visitors' prompts come from")
    common.add_argument("--gen-length", type=int, default=48, help="generation length L of each run")
    server_args = argparse.ArgumentParser(add_help=False, parents=[common])
    server_args.add_argument("--block-length", type=int, default=8, help="block length of each run")
    server_args.add_argument("--strategies", type=json.loads, default=DEFAULT_STRATEGIES,
                             help="JSON list of strategy specs, as the run API takes them")
    server_args.add_argument("--url", default=None, help="drive this running app instead of starting one")
    server_args.add_argument("--pid", type=int, default=None, help="with --url: the app's process id, for RSS")
    server_args.add_argument("--log", default="/tmp/app_hosting_server.log", help="the started app's output")
    s = sub.add_parser("soak", parents=[server_args], help="server RSS over N visits from fresh clients")
    s.add_argument("--visits", type=int, default=1000, help="number of visits")
    s.add_argument("--every", type=int, default=100, help="print RSS every K visits")
    s.add_argument("--warmup", type=int, default=200, help="visits before the growth is measured")
    s.add_argument("--parallel", type=int, default=2, help="visitors at a time")
    lo = sub.add_parser("load", parents=[server_args], help="latency and throughput for C concurrent visitors")
    lo.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32], help="numbers of concurrent visitors")
    lo.add_argument("--runs", type=int, default=32, help="runs per level, shared by its visitors")
    b = sub.add_parser("batching", parents=[common], help="forward-pass time per visitor against batch size")
    b.add_argument("--batch", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32], help="batch sizes")
    b.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    b.add_argument("--repeats", type=int, default=20, help="timed passes per batch size")
    argv = sys.argv[1:] if argv is None else argv
    app_args = argv[argv.index("--") + 1:] if "--" in argv else []
    args = p.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    if args.command == "batching":
        return batching(args)
    args.app_args = app_args
    server = Server(args)
    try:
        (soak if args.command == "soak" else load)(args, server)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
