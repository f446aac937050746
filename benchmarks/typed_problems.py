"""Type problems into the page in a real browser, the way a visitor does, and print what the top-k
(one token per step) column answers. Starts `python app.py` on a free local port, drives Debian's
Chromium with Playwright, saves a screenshot of the last problem.

    python benchmarks/typed_problems.py --screenshot docs/app_typed.png

The default problems are written by hand, one per kind, and are in no task file.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = "/usr/bin/chromium"
PROBLEMS = [  # (kind, prompt, answer)
    ("gain", "Nadia has 14 crayons. Her aunt gives her 7 more crayons. How many crayons does Nadia have now?", 21),
    ("loss", "Oscar had 35 stickers and gave 9 of them to his cousin. How many stickers does Oscar have left?", 26),
    ("multiplication", "There are 4 plates with 5 cookies on each plate. How many cookies are there?", 20),
    ("division", "Ruby has 24 beads. She shares them equally among 6 friends. How many beads does each friend get?", 4),
    ("comparison", "Hugo has 16 cards. Ella has 5 more cards than Hugo. How many cards does Ella have?", 21),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(REPO, "checkpoints", "tiny-dllm"))
    ap.add_argument("--screenshot", default="", help="PNG path for a screenshot of the last problem")
    ap.add_argument("--timeout", type=float, default=240.0, help="seconds to wait for the server")
    args = ap.parse_args(argv)
    if not os.path.exists(CHROMIUM):
        print(f"{CHROMIUM} is missing (apt-get install chromium)", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "app.py", "--model", args.model, "--port", str(port), "--device", "cpu"],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    right = 0
    try:
        url, t0 = f"http://127.0.0.1:{port}/", time.time()
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() - t0 > args.timeout or proc.poll() is not None:
                    print("the app did not start", file=sys.stderr)
                    return 1
                time.sleep(1)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.goto(url)
            page.wait_for_selector("#run", timeout=60000)
            for kind, prompt, answer in PROBLEMS:
                page.goto(url)  # a fresh page per problem: no column state left from the last run
                page.wait_for_selector("#run", timeout=60000)
                page.fill("#prompt textarea", prompt)
                page.click("#run")
                page.wait_for_function("document.querySelector('#canvas-2 .um-canvas[data-state=done]') !== null",
                                       timeout=120000)
                info = page.inner_text("#info-2")
                said = re.search(r"answer:\s*(.*)", info)
                text = said.group(1).strip() if said else info
                nums = re.findall(r"-?\d+", text)
                ok = bool(nums) and int(nums[-1]) == answer
                right += ok
                print(f"{'RIGHT' if ok else 'WRONG'} [{kind}] {prompt}\n    top-k k=1 wrote: {text}")
            if args.screenshot:
                page.screenshot(path=args.screenshot, full_page=True)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(f"{right} of {len(PROBLEMS)} typed problems answered right (top-k, one token per step)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
