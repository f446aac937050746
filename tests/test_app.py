"""The demo app driven from outside: `python app.py` as a subprocess on a free port, then
gradio_client (results equal the library's own `generate`, errors are reported) and a real
browser (Playwright on Debian's chromium: run, scrub, plots; saves docs/app_screenshot.png)."""

import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = "/usr/bin/chromium"
SCREENSHOT = os.path.join(REPO, "docs", "app_screenshot.png")
EMBEDDED = os.path.join(REPO, "checkpoints", "tiny-dllm")
POLICY = "test-policy"
SHORT_TTL = 3  # seconds a session keeps its runs on the "tiny limits" server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(model: str, policies: str, log_path, *extra: str):
    """Start `python app.py` on a free port; returns (process, url, log path) without waiting."""
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           "PYTHONUNBUFFERED": "1"}
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "app.py", "--model", model, "--policies", policies, "--port", str(port),
             "--device", "cpu", *extra], cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env)
    return proc, f"http://127.0.0.1:{port}/", log_path


def _wait(proc, url, log_path, timeout=120) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"app exited with {proc.returncode}:\n{open(log_path).read()}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return url
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"app did not answer on {url} within {timeout} s:\n{open(log_path).read()}")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory):
    """A folder with one learned-policy checkpoint (random weights) and its card."""
    import torch

    from unmasker.policies.learned import ConfidencePolicyNet

    root = tmp_path_factory.mktemp("policies")
    torch.manual_seed(1)
    ConfidencePolicyNet().save_pretrained(str(root / POLICY))
    card = {"name": POLICY, "task": "sorting", "block_length": 4, "gen_length": 8, "alpha": 0.3, "temperature": 0.5,
            "train_command": "python -m training.train_policy --task sorting", "wall_minutes": 1.0,
            "val_accuracy": 0.5, "val_nfe": 4.0}
    (root / POLICY / "card.json").write_text(json.dumps(card))
    return str(root)


@pytest.fixture(scope="module")
def servers(tiny_model_dir, policy_dir, tmp_path_factory):
    """The app on the tiny random model with a test policy; the same with hosting limits made tiny
    (runs expire after SHORT_TTL s, one run at a time, one visitor waiting); and, when it has been
    trained, on the embedded model with the shipped policies (for the browser test). All start at once."""
    logs = tmp_path_factory.mktemp("logs")
    specs = {"tiny random model": (tiny_model_dir, policy_dir),
             "tiny limits": (tiny_model_dir, policy_dir, "--session_ttl", str(SHORT_TTL), "--concurrency", "1",
                             "--max_queue", "1")}
    if os.path.isfile(os.path.join(EMBEDDED, "config.json")):
        specs["embedded model"] = (EMBEDDED, os.path.join(REPO, "checkpoints", "policies"))
    started = {name: _spawn(model, pol, logs / f"{i}.log", *extra)
               for i, (name, (model, pol, *extra)) in enumerate(specs.items())}
    try:
        yield {name: _wait(*s) for name, s in started.items()}
    finally:
        for proc, _, _ in started.values():
            _stop(proc)


@pytest.fixture(scope="module")
def app_url(servers):
    return servers["tiny random model"]


def _client(url):
    from gradio_client import Client

    return Client(url, verbose=False)


def _run(client, prompt, strategies, gen_length=16, block_length=8, seed=0, temperature=0.0):
    """Call the streaming `run` endpoint; returns (final outputs, number of streamed updates)."""
    job = client.submit(prompt, gen_length, block_length, seed, temperature, strategies, api_name="/run")
    final = job.result(timeout=60)
    return final, len(job.outputs())


def _library(dllm, policy_dir, prompt, spec, gen_length, block_length, seed, temperature):
    from unmasker import SamplerConfig, build_policy, generate

    params = dict(spec["params"])
    if spec["policy"] == "learned":
        params["checkpoint"] = os.path.join(policy_dir, params["checkpoint"])
    policy = build_policy(spec["policy"], **params)
    return generate(dllm, policy, [prompt], SamplerConfig(gen_length, block_length, temperature), seed=seed)


def _assert_same(col, traj):
    assert col["text"] == traj.texts[0]
    assert col["token_ids"] == traj.tokens[0].tolist()
    assert col["order"] == traj.unmask_step[0].tolist()
    assert col["nfe"] == int(traj.nfe[0])
    assert sum(col["committed_per_step"]) == col["gen_length"]


def test_run_two_strategies_matches_library(app_url, tiny_dllm, policy_dir):
    strategies = [
        {"policy": "learned", "params": {"checkpoint": POLICY, "temperature": 0.5, "beta": 1.5}},
        {"policy": "confidence_threshold", "params": {"threshold": 0.0001}},
    ]
    prompt, gen, block, seed, temp = "sort : 15 3 9", 16, 8, 3, 0.8  # sampled tokens: the seed matters
    final, updates = _run(_client(app_url), prompt, strategies, gen, block, seed, temp)
    result = final[0]
    assert [c["policy"] for c in result] == ["learned", "confidence_threshold"]
    for col, spec in zip(result, strategies):
        assert col["done"] and col["steps"] == len(col["committed_per_step"]) and col["wall_s"] > 0
        _assert_same(col, _library(tiny_dllm, policy_dir, prompt, spec, gen, block, seed, temp))
    # Every token of the random model clears 1e-4 (a vocabulary of about 1,500 tokens): one pass
    # per block, so the threshold really reached the policy (0.9 would take one pass per token).
    assert result[1]["nfe"] == gen // block
    assert updates >= 2  # streamed: at least the first step and the final state
    canvas = final[6]  # outputs: result, error, 4 infos, 4 canvases, ...
    assert canvas.count("um-tok") == gen and 'data-state="done"' in canvas


def test_two_clients_at_once_get_their_own_runs(app_url, tiny_dllm, policy_dir):
    jobs = [("sort : 7 2 5", {"policy": "top_k_confidence", "params": {"k": 2}}, 1),
            ("sudoku : 1 _ 3 4 / 3 4 _ 2 / _ 1 4 3 / 4 3 2 _", {"policy": "margin", "params": {"k": 1}}, 2)]

    def go(job):  # runs of 32 steps, long enough to overlap on the server (concurrency_limit=2)
        prompt, spec, seed = job
        return _run(_client(app_url), prompt, [spec], 32, 8, seed, 0.5)[0][0][0]

    with ThreadPoolExecutor(2) as pool:
        cols = list(pool.map(go, jobs))
    for col, (prompt, spec, seed) in zip(cols, jobs):
        _assert_same(col, _library(tiny_dllm, policy_dir, prompt, spec, 32, 8, seed, 0.5))


TOP1 = {"policy": "top_k_confidence", "params": {"k": 1}}


@pytest.mark.parametrize("prompt, gen, block, spec, message", [
    ("   ", 16, 8, TOP1, "prompt is empty"),
    ("sort : " + "7 " * 300, 16, 8, TOP1, "prompt is too long"),
    ("sort : 3 1", 16, 5, TOP1, "block_length=5 must divide gen_length=16"),
    ("sort : 3 1", 16, 8, {"policy": "confidence_threshold", "params": {"threshold": 1.5}},
     "threshold=1.5: must be in (0, 1]"),
    ("sort : 3 1", 16, 8, {"policy": "learned", "params": {"checkpoint": "nope"}}, "'nope' is not shipped"),
])
def test_bad_input_shows_a_message_and_the_app_keeps_working(app_url, prompt, gen, block, spec, message):
    client = _client(app_url)
    final, _ = _run(client, prompt, [spec], gen, block)
    assert message in final[0]["error"]
    assert final[1]["visible"] and message in final[1]["value"]  # the error box on the page
    final, _ = _run(client, "sort : 3 1", [{"policy": "top_k_confidence", "params": {"k": 4}}], 16, 8)
    assert final[0][0]["done"] and final[0][0]["nfe"] == 4
    assert final[1]["visible"] is False  # a good run clears the error box


BAD_VALUES = [  # (prompt, gen_length, block_length, seed, temperature, strategies), message
    (("sort : 3 1", 16, 8, 2**70, 0.0, [TOP1]), "seed=1180591620717411303424: must be an integer from 0 to 4294967295"),
    (("sort : 3 1", 16, 8, -1, 0.0, [TOP1]), "seed=-1: must be an integer from 0 to 4294967295"),
    (("sort : 3 1", 16, 8, 1.5, 0.0, [TOP1]), "seed=1.5: must be an integer"),
    (("sort : 3 1", 16, 8, 0, "nan", [TOP1]), "temperature='nan': must be a finite number"),
    (("sort : 3 1", 16, 8, 0, "-inf", [TOP1]), "temperature='-inf': must be a finite number"),
    (("sort : 3 1", 16, 8, 0, None, [TOP1]), "temperature is empty"),
    (("sort : 3 1", "inf", 8, 0, 0.0, [TOP1]), "gen_length='inf': must be an integer"),
    (("sort : 3 1", 2**70, 8, 0, 0.0, [TOP1]), "gen_length=1180591620717411303424: at most 256"),
    ((5, 16, 8, 0, 0.0, [TOP1]), "The prompt must be text"),
    (("sort : 3 1", 16, 8, 0, 0.0, [{"policy": "top_k_confidence", "params": {"k": 2**70}}]),
     "k=1180591620717411303424: too large (at most 2147483647)"),
    (("sort : 3 1", 16, 8, 0, 0.0, [{"policy": "top_k_confidence", "params": {"k": 1e300}}]),
     "k=1.000e+300: too large"),
    (("sort : 3 1", 16, 8, 0, 0.0, [{"policy": "eb_sampler", "params": {"gamma": "inf"}}]),
     "gamma=inf: must be a finite number >= 0"),
    (("sort : 3 1", 16, 8, 0, 0.0, [{"policy": "top_k_confidence", "params": [4]}]), "params must be a dict"),
    (("sort : 3 1", 16, 8, 0, 0.0, "[{"), "strategies is not valid JSON"),
]


@pytest.mark.parametrize("args, message", BAD_VALUES, ids=[m.split(":")[0] for _, m in BAD_VALUES])
def test_every_bad_value_from_an_api_client_gets_a_message(app_url, args, message):
    job = _client(app_url).submit(*args, api_name="/run")
    final = job.result(timeout=60)
    assert message in final[0]["error"]                                  # the API result
    assert final[1]["visible"] and message in final[1]["value"]          # the error box on the page


def _call_raw(url: str, body: str) -> list:
    """POST a hand-written JSON body to the REST `run` endpoint; the final outputs."""
    req = urllib.request.Request(url + "gradio_api/call/run", body.encode(), {"Content-Type": "application/json"})
    event = json.load(urllib.request.urlopen(req, timeout=30))["event_id"]
    stream = urllib.request.urlopen(f"{url}gradio_api/call/run/{event}", timeout=60).read().decode()
    return json.loads([line for line in stream.splitlines() if line.startswith("data: ")][-1][6:])


@pytest.mark.parametrize("temperature, threshold, message", [
    ("NaN", 0.9, "temperature=nan: must be a finite number"),
    ("-Infinity", 0.9, "temperature=-inf: must be a finite number"),
    ("0", "NaN", "threshold=nan: must be a finite number"),
])
def test_nan_and_infinity_sent_over_http_get_a_message(app_url, temperature, threshold, message):
    """gradio_client refuses to send NaN (it is not JSON), but Python's JSON parser on the server reads
    the NaN / Infinity literals another client may send."""
    body = ('{"data": ["sort : 3 1", 16, 8, 0, %s, [{"policy": "confidence_threshold", "params": {"threshold": %s}}]]}'
            % (temperature, threshold))
    result, error_box = _call_raw(app_url, body)[:2]
    assert message in result["error"] and message in error_box["value"]


def test_an_expired_session_releases_its_runs(servers):
    client = _client(servers["tiny limits"])  # runs kept SHORT_TTL seconds after the last one
    final, _ = _run(client, "sort : 3 1", [TOP1], 16, 8)
    assert final[0][0]["done"]
    assert 'data-step="3"' in client.predict(3, api_name="/scrub_0")  # scrubbing reads the session's runs
    time.sleep(SHORT_TTL + 2)  # Gradio deletes expired state once a second
    assert "No run to show" in client.predict(3, api_name="/scrub_0")


def test_a_full_queue_tells_the_visitor_the_app_is_busy(servers):
    from gradio_client.utils import QueueError, Status

    url = servers["tiny limits"]  # one run at a time, at most one visitor waiting
    long = ("sort : 3 1", 240, 240, 0, 0.0, [TOP1] * 4)  # 4 x 240 steps: seconds on the tiny model
    running = _client(url).submit(*long, api_name="/run")
    deadline = time.time() + 60
    while not running.outputs() and time.time() < deadline:
        time.sleep(0.05)
    waiting = _client(url).submit(*long, api_name="/run")
    while waiting.status().code != Status.IN_QUEUE and time.time() < deadline:
        time.sleep(0.05)
    assert not running.done() and waiting.status().code == Status.IN_QUEUE
    with pytest.raises(QueueError, match="Queue is full! Please try again"):
        _client(url).submit(*long, api_name="/run").result(timeout=30)
    running.cancel()
    waiting.cancel()
    final, _ = _run(_client(url), "sort : 3 1", [TOP1])  # the visitors left: the next one is served
    assert final[0][0]["done"]


def test_hosting_settings_are_checked():
    import app

    for bad in (dict(concurrency=0), dict(max_queue=-1), dict(session_ttl=float("inf")), dict(threads=0),
                dict(trim_every=-1.0), dict(trim_every=float("nan"))):
        with pytest.raises(ValueError, match=next(iter(bad))):
            app.AppConfig(**bad)
    assert app.start_heap_trimmer(0) is False  # 0 turns the heap trimmer off


def test_typed_words_the_model_does_not_know_are_named_before_running(app_url):
    client = _client(app_url)
    typed = "Jorge has 5 zucchinis. He buys 3 more. How many zucchinis does Jorge have now?"
    note = client.predict(typed, api_name="/check_prompt")
    assert "does not know 2 word(s)" in note and "`Jorge`, `zucchinis`" in note
    assert "sudoku :" in note and "sort :" in note          # what it does understand: one example per family
    assert client.predict("Tom has 4 apples. He buys 3 more apples. How many?", api_name="/check_prompt") == ""
    final, _ = _run(client, typed, [{"policy": "top_k_confidence", "params": {"k": 4}}])
    assert final[0][0]["unknown_words"] == ["Jorge", "zucchinis"]


def test_new_random_problem_is_from_the_test_split_and_graded(app_url):
    from training.tasks import split_of

    client = _client(app_url)
    prompt, gen, block, *_ = client.predict("sorting", api_name="/new_problem")
    assert prompt.startswith("sort : ") and split_of(prompt) == "test" and (gen, block) == (8, 4)
    final, _ = _run(client, prompt, [{"policy": "top_k_confidence", "params": {"k": 2}}], gen, block)
    assert isinstance(final[0][0]["correct"], bool)  # the answer is known, so the column is graded


def test_canvas_view_follows_the_decode_order():
    from page import views

    rec = views.new_record("random", "Random", {}, 4, 4, 0, mask_id=2)
    rec.update(tokens=["a", "b", "[EOS]", "c"], kinds=["tok", "tok", "eos", "tok"], order=[1, 0, 1, 2],
               conf=[0.9, 0.5, 0.99, 0.1], alts=["a 0.90  z 0.05"] * 4, committed_per_step=[1, 2, 1], done=True)
    at1 = views.canvas_html(rec, 1)
    assert at1.count("um-new") == 2 and at1.count("um-masked") == 1 and at1.count("um-eos") == 1
    assert "p = 0.900" in at1 and "z 0.05" in at1  # hover text: confidence and alternatives
    assert views.canvas_html(rec, -1).count("um-masked") == 4
    fig = views.decode_order_figure([rec])
    assert list(fig.data[0].x) == [0, 1, 2, 3] and list(fig.data[0].y) == [1, 0, 1, 2]


def test_default_learned_column_prefers_a_policy_trained_on_the_loaded_model():
    from types import SimpleNamespace

    from page import compare

    def pol(name, model, task="word_problems", block=8, alpha=1.0, val_reward=0.5):
        card = {"model": model, "task": task, "block_length": block, "reward": "multiplicative", "alpha": alpha,
                "val_reward": val_reward}
        return name, compare.ShippedPolicy(name=name, path=name, card=card, net=object())

    policies = dict([pol("a1", "checkpoints/tiny-dllm"), pol("b1", "checkpoints/tiny-dllm-b/"),
                     pol("b-sudoku", "checkpoints/tiny-dllm-b", task="sudoku", block=4),
                     pol("a3", "checkpoints/tiny-dllm", alpha=3.0),
                     pol("full-a1", "checkpoints/tiny-dllm", block=48),
                     pol("a1-worse", "checkpoints/tiny-dllm", val_reward=0.4)])
    tasks = {"word_problems": SimpleNamespace(block_length=8), "sudoku": SimpleNamespace(block_length=4)}

    def res(model_name):
        return compare.Resources(dllm=None, policies=policies, policies_dir="", tasks=tasks, examples=[],
                             model_card={"name": model_name} if model_name else {})

    assert compare.pick_checkpoint(res("tiny-dllm"), "word_problems") == "a1"
    assert compare.pick_checkpoint(res("tiny-dllm-b"), "word_problems") == "b1"
    assert compare.pick_checkpoint(res("tiny-dllm-b"), "sudoku") == "b-sudoku"
    assert compare.pick_checkpoint(res(None), "sudoku") == "b-sudoku"     # unknown model: task first
    assert compare.pick_checkpoint(res("tiny-dllm"), "sorting") == "a1"   # no policy for it: the model's alpha-1 one
    # the setting decides too: full diffusion (block = L = 48) picks the policy trained there
    assert compare.pick_checkpoint(res("tiny-dllm"), "word_problems", 48) == "full-a1"
    assert compare.pick_checkpoint(res("tiny-dllm"), "word_problems", 8) == "a1"
    # no policy at that block length: the nearest one
    assert compare.pick_checkpoint(res("tiny-dllm"), "word_problems", 128) == "full-a1"
    assert compare.pick_checkpoint(res("tiny-dllm"), "word_problems", 12) == "a1"
    # a model trained from another one (its card's lineage, nearest first) uses its parent's policies
    policies.update(dict([pol("v2-a1", "checkpoints/tiny-dllm-v2"), pol("v3-a1", "checkpoints/tiny-dllm-v3", val_reward=0.1)]))
    child = compare.Resources(dllm=None, policies=policies, policies_dir="", tasks=tasks, examples=[],
                              model_card={"name": "tiny-dllm-v4", "lineage": ["tiny-dllm-v3", "tiny-dllm-v2"]})
    assert compare.pick_checkpoint(child, "word_problems") == "v3-a1"
    child.model_card["lineage"] = ["tiny-dllm-v2"]
    assert compare.pick_checkpoint(child, "word_problems") == "v2-a1"
    assert compare.pick_checkpoint(res("tiny-dllm"), "word_problems") == "a1"  # native still first
    # the block length counts before the model: a parent's policy trained at L = 128 beats the
    # native semi-AR one there; Learn2PD's filter only runs at its own block length
    policies.update(dict([pol("v3-full128", "checkpoints/tiny-dllm-v3", block=128, val_reward=0.1),
                          pol("filter", "checkpoints/tiny-dllm-v4", block=8, val_reward=0.9)]))
    policies["filter"].card["family"] = "learn2pd_filter"
    assert compare.pick_checkpoint(child, "word_problems", 128) == "v3-full128"
    del policies["v3-full128"]
    assert compare.pick_checkpoint(child, "word_problems", 8) == "filter"  # it runs there and fits best
    assert compare.pick_checkpoint(child, "word_problems", 16) == "v2-a1"  # never a filter of another block
    for k in ("v2-a1", "v3-a1", "filter"):
        del policies[k]
    # otherwise equal fits: the better validation reward (a1 beats a1-worse in either order)
    policies["a1"].card["val_reward"] = 0.3
    assert compare.pick_checkpoint(res("tiny-dllm"), "word_problems") == "a1-worse"


def test_a_cards_test_time_settings_become_the_learned_columns_defaults():
    from page import compare

    cards = {"floored": {"temperature": 0.5, "min_confidence": 0.7}, "plain": {"temperature": 1.0},
             "filter": {"temperature": 1.0, "decision_threshold": 0.5, "family": "learn2pd_filter"}}
    policies = {n: compare.ShippedPolicy(name=n, path=n, card=c, net=object()) for n, c in cards.items()}
    res = compare.Resources(dllm=None, policies=policies, policies_dir="", tasks={}, examples=[], model_card={})
    plain = {"temperature": 1.0, "min_confidence": 0.0, "decision_threshold": 0.0}  # as trained: Bernoulli draws
    assert compare.card_settings(res, "floored") == {**plain, "temperature": 0.5, "min_confidence": 0.7}
    assert compare.card_settings(res, "plain") == plain
    assert compare.card_settings(res, "filter") == {**plain, "decision_threshold": 0.5}  # the filter's own rule
    assert compare.card_settings(res, compare.RANDOM_INIT) == plain
    assert set(compare.CARD_SETTINGS) == set(plain)
    # the shipped default policy's card carries the floor the report picked on validation problems
    with open(os.path.join(os.path.dirname(__file__), "..", "checkpoints/policies/v3-semiar-a1/card.json")) as f:
        shipped = json.load(f)
    assert 0 < shipped["min_confidence"] < 1


def test_app_exits_with_a_clear_message_when_the_model_cannot_load(tmp_path, capsys):
    import app  # importing loads nothing

    assert app.main(["--model", str(tmp_path), "--port", str(_free_port())]) == 2
    err = capsys.readouterr().err
    assert "cannot load the dLLM" in err and "no config.json" in err


def _shipped_pick(task: str, block: int) -> str:
    """What the embedded-model page should pick for the learned column: app.py's own policy loader
    on the shipped folder, without the dLLM."""
    import app
    from page import compare
    from training.tasks import TASKS, get_task

    root = os.path.join(REPO, "checkpoints", "policies")
    with open(os.path.join(EMBEDDED, "card.json")) as f:
        card = json.load(f)
    res = compare.Resources(dllm=None, policies=app.load_policies(root), policies_dir=root,
                            tasks={n: get_task(n) for n in TASKS}, examples=[], model_card=card)
    return compare.pick_checkpoint(res, task, block)


def test_browser_run_scrub_and_plots(servers, capsys):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (install Debian's chromium); never downloading a browser")
    from playwright.sync_api import sync_playwright

    from training.tasks import get_task

    model = "embedded model" if "embedded model" in servers else "tiny random model"
    url = servers[model]
    typed = get_task("word_problems").sample(random.Random(5), "test").prompt
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.goto(url)
        page.wait_for_selector("#run")
        page.fill("#prompt textarea", typed)
        # Click time and the first rendered canvas, both on the browser's clock.
        page.evaluate("""() => {
            window.__t0 = null; window.__t1 = null;
            document.querySelector('#run').addEventListener('click', () => { window.__t0 = performance.now(); }, true);
            new MutationObserver(() => {
                if (window.__t0 !== null && window.__t1 === null && document.querySelector('[id^=canvas-] .um-canvas'))
                    window.__t1 = performance.now();
            }).observe(document.body, {subtree: true, childList: true});
        }""")
        page.click("#run")
        page.wait_for_function("window.__t1 !== null", timeout=20000)
        first_ms = page.evaluate("window.__t1 - window.__t0")
        with capsys.disabled():
            print(f"\n[app] click to first step on the page: {first_ms:.0f} ms ({model})")
        done = "document.querySelectorAll('[id^=canvas-] .um-canvas[data-state=done]').length === 3"
        page.wait_for_function(done, timeout=30000)

        steps = int(page.get_attribute("#canvas-0 .um-canvas", "data-steps"))
        assert page.locator("#canvas-0 .um-masked").count() == 0  # finished: nothing masked
        page.locator("#slider-0 input[type=range]").fill("0")  # scrub back to the first step
        page.wait_for_function("document.querySelector('#canvas-0 .um-canvas').dataset.step === '0'", timeout=10000)
        new = page.locator("#canvas-0 .um-new").count()
        assert new >= 1 and page.locator("#canvas-0 .um-masked").count() == 48 - new
        assert "p = " in page.get_attribute("#canvas-0 .um-new >> nth=0", "data-tip")  # hover text
        page.locator("#slider-0 input[type=range]").fill(str(steps - 1))
        page.wait_for_function("document.querySelector('#canvas-0 .um-masked') === null", timeout=10000)
        page.wait_for_function("document.querySelectorAll('#order-plot path.point').length >= 48", timeout=15000)
        assert page.locator("#count-plot .js-plotly-plot").count() == 1

        page.get_by_role("button", name="Full diffusion (block = length)").click()
        page.wait_for_function("document.querySelector('#block-length input').value === '48'")

        # A drawn problem has a known answer: every column is graded. This is the screenshot.
        page.click("#draw")
        page.wait_for_function(f"document.querySelector('#prompt textarea').value !== {json.dumps(typed)}")
        page.click("#run")
        page.wait_for_function("[0, 1, 2].every(i => /correct|wrong/.test("
                               "document.querySelector('#info-' + i).innerText))", timeout=30000)
        page.wait_for_function("document.querySelectorAll('#order-plot path.point').length >= 48", timeout=15000)
        page.screenshot(path=SCREENSHOT, full_page=True)
        # An example sets the task family and the lengths too, and the learned column follows them.
        page.get_by_text("sudoku : _ _ _ _ / 1 2", exact=False).first.click()
        page.wait_for_function("document.querySelector('#task input').value === 'sudoku'", timeout=10000)
        page.wait_for_function("document.querySelector('#block-length input').value === '4'", timeout=10000)
        if model == "embedded model":
            want = _shipped_pick("sudoku", 4)
            page.wait_for_function(f"document.querySelector('#ckpt-0 input').value === {json.dumps(want)}",
                                   timeout=10000)

        page.get_by_role("tab", name="Policies").click()
        page.get_by_text("Shipped learned policies").wait_for()
        assert first_ms < 1000, f"first step took {first_ms:.0f} ms after the click"
        browser.close()
    assert os.path.getsize(SCREENSHOT) > 10_000
