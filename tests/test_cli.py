"""`python -m unmasker`, driven from outside (subprocess) and, for the many error cases, in-process."""

import json
import os
import subprocess
import sys

import pytest

from unmasker import DEFAULT_MODEL
from unmasker.cli import REPO_ROOT, main, resolve_model

ENV = {**os.environ, "PYTHONPATH": REPO_ROOT, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def run_cli(*args, cwd=REPO_ROOT):
    return subprocess.run([sys.executable, "-m", "unmasker", *args], capture_output=True, text=True, env=ENV,
                          cwd=cwd, timeout=120)


def exit_code(argv):
    """main()'s status, whether it returns it or argparse exits with it."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def test_policies_command():
    out = run_cli("policies")
    assert out.returncode == 0, out.stderr
    for line in ("top_k_confidence:", "confidence_threshold:", "learned:", "threshold = 0.9", "gamma = 0.1"):
        assert line in out.stdout


def test_help_documents_every_flag(capsys):
    assert exit_code(["--help"]) == 0   # argparse exits 0 after printing
    out = capsys.readouterr().out
    for flag in ("policies", "generate", "--model", "--policy", "--param", "--gen-length", "--block-length",
                 "--temperature", "--seed", "--steps", "--json", "--device", "--top-alternatives"):
        assert flag in out
    assert "default 48" in out and "default 8" in out


def test_generate_json_subprocess(tiny_model_dir, tmp_path):
    out = run_cli("generate", "--model", tiny_model_dir, "--policy", "confidence_threshold", "--param", "threshold=0.5",
                  "--gen-length", "16", "--block-length", "4", "--json", "sort : 3 1 2", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)   # exactly one JSON object: anything else on stdout fails here
    assert {"text", "nfe", "steps", "policy", "params", "still_masked", "elapsed"} <= set(result)
    assert result["policy"] == "confidence_threshold" and result["params"] == {"threshold": 0.5}
    assert 4 <= result["nfe"] <= 16 and result["still_masked"] == 0
    assert len(result["steps"]) == result["nfe"]
    positions = [p for s in result["steps"] for p in s["positions"]]
    assert sorted(positions) == list(range(16))   # every position committed exactly once
    for s in result["steps"]:
        assert set(s) >= {"step", "positions", "tokens"} and len(s["positions"]) == len(s["tokens"]) >= 1


def test_generate_text_and_steps(tiny_model_dir, capsys):
    rc = main(["generate", "--model", tiny_model_dir, "--param", "k=2", "--gen-length", "8", "--block-length", "4",
               "--steps", "sort : 3 1 2"])
    out = capsys.readouterr().out
    assert rc == 0
    lines = out.strip().splitlines()
    assert [ln.split()[:2] for ln in lines[:4]] == [["step", str(i)] for i in range(4)]   # 8 positions, k=2
    assert all("+2" in ln for ln in lines[:4])
    assert lines[-1].startswith("NFE 4 / 8")


def test_generate_json_in_process_matches_the_library(tiny_model_dir, tiny_dllm, capsys):
    from unmasker import SamplerConfig, build_policy, generate

    assert main(["generate", "--model", tiny_model_dir, "--policy", "random", "--param", "k=3", "--seed", "4",
                 "--temperature", "0.7", "--gen-length", "8", "--block-length", "8", "--json", "sort : 3 1 2"]) == 0
    result = json.loads(capsys.readouterr().out)
    traj = generate(tiny_dllm, build_policy("random", k=3), ["sort : 3 1 2"], SamplerConfig(8, 8, 0.7), seed=4)
    assert result["text"] == traj.texts[0] and result["nfe"] == int(traj.nfe[0]) == 3
    assert [len(s["positions"]) for s in result["steps"]] == [3, 3, 2]


@pytest.mark.parametrize("args, message", [
    (["--policy", "nope"], "unknown policy 'nope'"),
    (["--param", "k=abc"], "k='abc'"),
    (["--param", "gamma=1"], "no parameter 'gamma'"),
    (["--param", "k"], "NAME=VALUE"),
    (["--policy", "confidence_threshold", "--param", "threshold=1.7"], "threshold=1.7"),
    (["--gen-length", "10"], "block_length=8 must divide gen_length=10"),
    (["--gen-length", "0"], "gen_length=0"),
    (["--temperature", "-1"], "temperature=-1.0"),
    (["--gen-length", "abc"], "invalid int value"),
    (["--nope"], "unrecognized arguments"),
])
def test_bad_input_is_one_line_and_exit_2(tiny_model_dir, capsys, args, message):
    rc = exit_code(["generate", "--model", tiny_model_dir, *args, "sort : 3 1 2"])
    err = capsys.readouterr()
    assert rc == 2
    assert message in err.err and len(err.err.strip().splitlines()) == 1
    assert "Traceback" not in err.err and err.out == ""


@pytest.mark.parametrize("prompt, model, message", [
    ("   ", None, "the prompt is empty"),
    ("sort : [MASK] 3", None, "mask token"),
    ("sort : 3 1 2", "/no/such/folder", "model folder '/no/such/folder' not found"),
    ("sort : 3 1 2", "EMPTY", "has no config.json"),
])
def test_bad_prompt_or_model(tiny_model_dir, tmp_path, capsys, prompt, model, message):
    model = str(tmp_path) if model == "EMPTY" else (model or tiny_model_dir)
    assert exit_code(["generate", "--model", model, prompt]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_error_from_outside_has_no_traceback():
    out = run_cli("generate", "--model", "/no/such/folder", "sort : 3 1 2")
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip().splitlines() == ["python -m unmasker generate: error: model folder '/no/such/folder' not found"]


def test_default_model_resolves_against_the_repo_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_model(DEFAULT_MODEL) == os.path.join(REPO_ROOT, DEFAULT_MODEL)
    (tmp_path / "checkpoints" / "tiny-dllm").mkdir(parents=True)
    assert resolve_model(DEFAULT_MODEL) == DEFAULT_MODEL   # found relative to the cwd first
    assert resolve_model("owner/some-hub-model") == "owner/some-hub-model"


def test_unknown_words_are_listed_before_running(tiny_model_dir, tiny_dllm, capsys):
    typed = "Jorge has 5 zucchinis. He buys 3 more. How many zucchinis does Jorge have now?"
    assert tiny_dllm.unknown_words(typed) == ["Jorge", "zucchinis"]         # in order, once each
    assert tiny_dllm.unknown_words("Tom has 4 apples. He buys 3 more apples. How many apples does Tom have now?") == []
    assert exit_code(["generate", "--model", tiny_model_dir, "--gen-length", "8", "--block-length", "8",
                      "--json", typed]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["unknown_words"] == ["Jorge", "zucchinis"]
    assert "does not know 2 word(s) of the prompt: Jorge, zucchinis" in out.err
