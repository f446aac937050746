"""GSM8K / MATH file tasks on a few rows written to temporary jsonl and parquet files."""

import json
import random

import pytest

from training.tasks import GSM8KFile, MATHFile
from training.tasks.real import (
    GENERATION_PREFIX, SYSTEM_PROMPT, boxed_contents, extract_gsm8k, format_prompt, normalize_math,
)

GSM_ROWS = [
    {"question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
                 "How many clips did Natalia sell altogether in April and May?",
     "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips "
               "altogether in April and May.\n#### 72"},
    {"question": "A shop sells 120 boxes of 9 pens. How many pens is that?",
     "answer": "120 * 9 = <<120*9=1080>>1080\n#### 1,080"},
    {"question": "Half of 5 cakes?", "answer": "5 / 2 = 2.5\n#### 2.5"},
]
MATH_ROWS = [
    {"problem": "What is $\\frac{1}{2}+\\frac{1}{4}$?",
     "solution": "We have $\\frac{1}{2}+\\frac{1}{4} = \\frac{2}{4}+\\frac{1}{4} = \\boxed{\\frac{3}{4}}$.",
     "answer": "\\frac{3}{4}"},
    {"problem": "Convert $(0,3)$ to polar coordinates.",
     "solution": "First $r = 3$, so $\\boxed{3}$ is the radius; the point is "
                 "$\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}.$",
     "answer": "\\left( 3, \\frac{\\pi}{2} \\right)"},
    {"problem": "What is 2 + 2?", "solution": "Two and two make four.", "answer": "4"},
]


def write(tmp_path, rows, fmt, name="data"):
    path = tmp_path / f"{name}.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        import pandas as pd

        pd.DataFrame(rows).to_parquet(path)
    return str(path)


@pytest.fixture(params=["jsonl", "parquet"])
def gsm(tmp_path, request):
    return GSM8KFile(write(tmp_path, GSM_ROWS, request.param))


@pytest.fixture(params=["jsonl", "parquet"])
def math_task(tmp_path, request):
    return MATHFile(write(tmp_path, MATH_ROWS, request.param))


def test_prompt_is_the_papers_eval_format():
    assert SYSTEM_PROMPT.startswith("You are a math expert. You will be given a question to solve.")
    assert "Wrap the final answer in a \\boxed{}.\nRespond in the following format:\n<reasoning>\n" in SYSTEM_PROMPT
    assert SYSTEM_PROMPT.endswith("</reasoning>\n<answer>\n\\boxed{...}\n</answer>")
    assert format_prompt("What is 1 + 1?") == SYSTEM_PROMPT + "\n\nWhat is 1 + 1?"
    assert GENERATION_PREFIX == "<reasoning>"


def test_gsm8k_rows(gsm):
    probs = gsm.problems("test")
    assert len(gsm) == 3 and [p.answer for p in probs] == ["72", "1080", "2.5"]
    assert probs[0].prompt == format_prompt(GSM_ROWS[0]["question"])
    assert probs[0].solution == GSM_ROWS[0]["answer"] and probs[0].task == "gsm8k"
    assert probs[1].meta["row"] == 1 and probs[1].meta["generation_prefix"] == "<reasoning>"
    assert gsm.problems("test", 2) == probs[:2]
    with pytest.raises(ValueError, match="only 3 problems"):
        gsm.problems("test", 4)


def test_gsm8k_verify(gsm):
    natalia, pens, cakes = gsm.problems("test")
    good = "<reasoning>\n48 / 2 = 24, 48 + 24 = 72\n</reasoning>\n<answer>\n\\boxed{72}\n</answer>"
    assert gsm.verify(good, natalia) and not gsm.verify(good, pens)
    assert gsm.verify("\\boxed{1,080}", pens)                          # commas stripped
    assert gsm.verify("<answer>So 5 / 2 = 2.5 cakes, i.e. 2.5</answer>", cakes)   # last number in <answer>
    assert gsm.verify("\\boxed{72.0000001}", natalia)                   # |diff| < 1e-6
    assert not gsm.verify("\\boxed{72.01}", natalia)
    assert not gsm.verify("The answer is 72.", natalia)                 # no \boxed{} and no <answer>: no answer
    assert not gsm.verify("<answer>\\boxed{", natalia)                  # truncated
    assert gsm.reward([good, "\\boxed{7}"], [natalia, natalia]) == [1.0, 0.0]


def test_gsm8k_extraction_order():
    assert extract_gsm8k("\\boxed{...} then \\boxed{x} then \\boxed{$18} then \\boxed{20}") == 18.0   # first parseable
    assert extract_gsm8k("\\boxed{72 dollars}") == 72.0
    assert extract_gsm8k("\\boxed{-3}") == -3.0
    assert extract_gsm8k("<answer>12 then 13</answer> 99") == 13.0
    assert extract_gsm8k("\\boxed{no} <answer>7</answer>") == 7.0   # no parseable box: fall back to <answer>
    assert extract_gsm8k("nothing here 5") is None
    assert extract_gsm8k("") is None


def test_math_rows_and_verify(math_task):
    frac, polar, four = math_task.problems("test")
    assert frac.answer == "\\frac{3}{4}"                                  # last \boxed{} of the solution
    assert polar.answer == "\\left( 3, \\frac{\\pi}{2} \\right)"           # nested braces kept
    assert four.answer == "4"                                             # no box: the answer column
    assert math_task.verify("so \\boxed{\\dfrac{3}{4}}", frac)
    assert math_task.verify("\\boxed{ \\frac{3}{4}. }", frac)
    assert math_task.verify("first \\boxed{\\frac{1}{2}}, finally \\boxed{\\frac{3}{4}}", frac)
    assert not math_task.verify("first \\boxed{\\frac{3}{4}}, finally \\boxed{\\frac{1}{2}}", frac)   # the last box counts
    assert not math_task.verify("\\boxed{\\frac{4}{3}}", frac)
    assert not math_task.verify("the answer is 3/4", frac)
    assert math_task.verify("\\boxed{(3,\\frac{\\pi}{2})}", polar)
    assert math_task.verify("\\boxed{4}", four) and not math_task.verify("\\boxed{5}", four)
    assert math_task.extract("\\boxed{a} and \\fbox{b}") == "b"


def test_math_normalisation():
    assert normalize_math("\\left( 1, 2 \\right).") == "(1,2)"
    assert normalize_math("\\dfrac{1}{2}") == normalize_math("\\tfrac{1}{2}") == "\\frac{1}{2}"
    assert normalize_math("x \\rightarrow 0") == "x\\rightarrow0"        # \right only as a delimiter
    assert normalize_math("10\\,000") == "10000"
    assert boxed_contents("\\boxed{a{b}c} \\boxed{d") == ["a{b}c"]


def test_a_file_is_one_split(tmp_path):
    path = write(tmp_path, GSM_ROWS, "jsonl")
    test_file = GSM8KFile(path)
    with pytest.raises(ValueError, match="holds the 'test' split, not 'train'"):
        test_file.problems("train")
    with pytest.raises(ValueError, match="not 'train'"):
        test_file.sample(random.Random(0))              # Task.sample defaults to training
    train_file = GSM8KFile(path, split="train")
    rng = random.Random(0)
    drawn = {train_file.sample(rng, "train").answer for _ in range(30)}
    assert drawn == {"72", "1080", "2.5"}
    with pytest.raises(ValueError, match="split='dev'"):
        GSM8KFile(path, split="dev")


def test_jsonl_and_parquet_agree(tmp_path):
    a = MATHFile(write(tmp_path, MATH_ROWS, "jsonl")).problems("test")
    b = MATHFile(write(tmp_path, MATH_ROWS, "parquet")).problems("test")
    assert [(p.prompt, p.answer) for p in a] == [(p.prompt, p.answer) for p in b]


def test_bad_files(tmp_path):
    with pytest.raises(ValueError, match="file not found"):
        GSM8KFile(str(tmp_path / "missing.jsonl"))
    with pytest.raises(ValueError, match="expected a"):
        GSM8KFile(str(tmp_path / "data.csv"))
    with pytest.raises(ValueError, match=r"no column \['question'\]"):
        GSM8KFile(write(tmp_path, MATH_ROWS, "jsonl", "math"))
    no_marker = [{"question": "q", "answer": "it is 4"}]
    with pytest.raises(ValueError, match="row 0: no '####'"):
        GSM8KFile(write(tmp_path, no_marker, "jsonl", "nomarker"))
    no_box = [{"problem": "p", "solution": "no box here"}]
    with pytest.raises(ValueError, match="row 0: the solution has no"):
        MATHFile(write(tmp_path, no_box, "parquet", "nobox"))
    # custom column names
    renamed = [{"q": r["question"], "a": r["answer"]} for r in GSM_ROWS]
    assert len(GSM8KFile(write(tmp_path, renamed, "jsonl", "renamed"), question_field="q", answer_field="a")) == 3


def test_get_task_reads_a_local_file(tmp_path):
    from training.tasks import get_task

    path = write(tmp_path, GSM_ROWS, "jsonl")
    task = get_task(f"gsm8k:{path}")
    assert isinstance(task, GSM8KFile) and len(task.problems("test", 3)) == 3
    assert task.generation_prefix == GENERATION_PREFIX
    with pytest.raises(ValueError, match="give the file"):
        get_task("math:")
    with pytest.raises(ValueError, match="gsm8k:PATH"):
        get_task("gsm9k")


def test_evaluate_cli_on_a_gsm8k_file_opens_answers_with_the_prefix(tiny_model_dir, tmp_path, monkeypatch):
    import unmasker
    from training import evaluate

    path = write(tmp_path, GSM_ROWS, "jsonl")
    seen = []
    real_generate = unmasker.generate

    def spy(dllm, policy, prompts, config, seed=0, **kw):
        seen.append(dllm.generation_prefix)
        return real_generate(dllm, policy, prompts, config, seed=seed, **kw)

    monkeypatch.setattr(unmasker, "generate", spy)
    out = str(tmp_path / "gsm.json")
    evaluate.main(["--model", tiny_model_dir, "--task", f"gsm8k:{path}", "--policies", "top_k_confidence:k=4",
                   "--gen_lengths", "8", "--block_lengths", "8", "--n", "3", "--seeds", "0", "--out", out,
                   "--progress", "false"])
    (point,) = json.load(open(out))["points"]
    assert point["n"] == 3 and point["mean_nfe"] == 2.0 and point["accuracy"] == 0.0
    assert seen and set(seen) == {GENERATION_PREFIX}
