"""The app's DiffusionGemma page on a tiny random DiffusionGemma: `python app.py --model <folder>`
as a subprocess, driven by gradio_client (records equal the library's runs) and by Chromium
(columns render accepted / renoised chips, scrubbing works)."""

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

transformers = pytest.importorskip("transformers")
if not hasattr(transformers, "DiffusionGemmaForBlockDiffusion"):
    pytest.skip("this transformers has no DiffusionGemma", allow_module_level=True)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = "/usr/bin/chromium"
SCREENSHOT = os.path.join(REPO, "docs", "app_gemma_screenshot.png")
C = 8
PROMPT = "sort : 15 3 9 27"


@pytest.fixture(scope="module")
def gemma_dir(tmp_path_factory):
    from training.tiny import build_tiny_diffusion_gemma

    return build_tiny_diffusion_gemma(str(tmp_path_factory.mktemp("tiny-gemma")), canvas_length=C)


@pytest.fixture(scope="module")
def gemma_url(gemma_dir, tmp_path_factory):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log_path = tmp_path_factory.mktemp("logs") / "gemma.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           "PYTHONUNBUFFERED": "1"}
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "app.py", "--model", gemma_dir, "--port", str(port), "--device",
                                 "cpu"], cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"app exited with {proc.returncode}:\n{open(log_path).read()}")
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if time.time() > deadline:
                    pytest.fail(f"app did not answer on {url}:\n{open(log_path).read()}")
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _run(url, strategies, max_new=2 * C, steps=5, seed=3, adaptive=True, conf=0.005, stab=1):
    from gradio_client import Client

    out = Client(url, verbose=False).predict(PROMPT, max_new, steps, seed, adaptive, conf, stab, strategies,
                                             api_name="/run")
    return out[0]


def test_columns_equal_the_library_runs(gemma_url, gemma_dir):
    from unmasker import load_dllm
    from unmasker.gemma import GemmaSampling, build_acceptance

    strategies = [{"rule": "entropy_bound", "params": {"entropy_bound": 0.1}},
                  {"rule": "top_k", "params": {"k": 2, "sticky": True}},
                  {"rule": "off", "params": {}},
                  {"rule": "threshold", "params": {"threshold": 0.5, "sticky": False}}]
    result = _run(gemma_url, strategies)
    assert [r["rule"] for r in result] == ["entropy_bound", "top_k", "off", "threshold"]
    gemma = load_dllm(gemma_dir, device="cpu")
    for rec, spec in zip(result, strategies):
        if spec["rule"] == "off":
            continue
        run = gemma.generate([PROMPT], build_acceptance(spec["rule"], **spec["params"]),
                             GemmaSampling(max_new_tokens=2 * C, max_denoising_steps=5), seed=3)
        assert rec["text"] == run.texts[0] and rec["token_ids"] == run.tokens[0].tolist()
        assert rec["passes"] == int(run.passes[0]) == len(rec["steps"]) == 10
        assert [s["n_accepted"] for s in rec["steps"]] == [int(s.accepted[0].sum()) for s in run.steps]
        assert all(s["n_accepted"] + s["n_renoised"] == C for s in rec["steps"])
    assert [s["n_accepted"] for s in result[1]["steps"][:5]] == [2, 4, 6, 8, 8]  # sticky top-2


def test_adaptive_stop_and_bad_input(gemma_url):
    eb = [{"rule": "entropy_bound", "params": {"entropy_bound": 0.1}}]
    rec = _run(gemma_url, eb, steps=6, conf=10.0, stab=0)[0]
    assert rec["passes"] == 2 and [s["stopped"] for s in rec["steps"]] == [True, True]
    bad = _run(gemma_url, [{"rule": "top_k", "params": {"k": 0, "sticky": False}}])
    assert "k=0" in bad["error"]
    assert "error" in _run(gemma_url, eb, steps=0)
    assert _run(gemma_url, eb)[0]["passes"] == 10  # still serving


def test_views_of_a_record(gemma_dir):
    from page import gemma as gemma_page
    from unmasker import load_dllm
    from unmasker.gemma import GemmaSampling, TopKAcceptance

    g = load_dllm(gemma_dir, device="cpu")
    run = g.generate([PROMPT], TopKAcceptance(k=3), GemmaSampling(max_new_tokens=2 * C, max_denoising_steps=3))
    rec = gemma_page.run_record(run, "top_k", "Top-k", {"k": 3}, g.token_strings, g.eos_ids, g.pad_id)
    first = gemma_page.canvas_html(rec, 0)
    assert first.count("um-acc") == 3 and first.count("um-ren") == C - 3 and 'data-step="0"' in first
    last = gemma_page.canvas_html(rec)  # second canvas: the first one's output shown before it
    assert last.count("um-prev") == C and 'data-step="5"' in last
    assert "decoder passes **6**" in gemma_page.info_markdown(rec)
    assert "argmax" not in gemma_page.result_json([rec])[0]["steps"][0]


def test_browser_shows_the_gemma_columns(gemma_url, capsys):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (install Debian's chromium); never downloading a browser")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.goto(gemma_url)
        page.wait_for_selector("#grun")
        page.fill("#gprompt textarea", PROMPT)
        page.fill("#gsteps input", "4")
        page.fill("#gmax-new input", str(2 * C))
        page.click("#grun")
        page.wait_for_function("document.querySelectorAll('[id^=gcanvas-] .um-canvas').length === 4", timeout=60000)
        assert page.get_attribute("#gcanvas-0 .um-canvas", "data-steps") == "8"  # 2 canvases x 4 steps
        assert page.locator("#gcanvas-0 .um-prev").count() == C  # last step: canvas 1 shown before canvas 2
        last = int(page.get_attribute("#gcanvas-2 .um-canvas", "data-accepted"))
        assert page.locator("#gcanvas-2 .um-acc").count() == last
        assert "decoder passes" in page.inner_text("#ginfo-0")
        page.locator("#gslider-2 input[type=range]").fill("0")
        page.wait_for_function("document.querySelector('#gcanvas-2 .um-canvas').dataset.step === '0'", timeout=10000)
        k = int(page.get_attribute("#gcanvas-2 .um-canvas", "data-accepted"))
        assert page.locator("#gcanvas-2 .um-acc").count() == k >= 1
        assert last == min(C, 4 * k)  # sticky top-k (column 3): k more accepted at each of the 4 steps
        assert page.locator("#gcanvas-2 .um-ren").count() == C - k
        assert "next input" in page.get_attribute("#gcanvas-2 .um-ren >> nth=0", "data-tip")
        page.wait_for_function("document.querySelectorAll('#gplot .js-plotly-plot').length === 1", timeout=15000)
        page.screenshot(path=SCREENSHOT, full_page=True)
        browser.close()
    assert os.path.getsize(SCREENSHOT) > 10_000
