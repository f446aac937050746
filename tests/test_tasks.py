"""The synthetic task families: verifiers, fixed disjoint splits, determinism, varied responses."""

import dataclasses
import random

import pytest

from training.tasks import SPLITS, TASKS, get_task, split_of
from training.tasks.puzzles import _solutions, valid_grid

N = 40
HELDOUT = "word_problems_heldout"  # test split only
TEST_ONLY = {HELDOUT, "everyday_heldout", "handwritten"}
SPLIT_TASKS = sorted(set(TASKS) - TEST_ONLY)
GENERATED = sorted(set(TASKS) - {"handwritten"})  # the hand-written set has answers, no reference responses


@pytest.mark.parametrize("name", GENERATED)
def test_reference_solutions_verify_and_wrong_answers_fail(name):
    task = get_task(name)
    for p in task.problems("test" if name in TEST_ONLY else "validation", N):
        assert task.verify(p.solution, p), p
        assert task.reward([p.solution], [p]) == [1.0]
        wrong = _corrupt(name, p)
        assert not task.verify(wrong, p), (p, wrong)
        assert not task.verify("", p)


def _corrupt(name, p):
    if name.startswith(("word_problems", "everyday")):
        return p.solution + f" The answer is {int(p.answer) + 1} ."
    if name in ("arithmetic", "facts"):
        head, last = p.solution.rsplit(" ", 1)
        return f"{head} {int(last) + 1}"
    if name == "sorting":
        nums = p.answer.split()
        return " ".join(reversed(nums)) if nums != nums[::-1] else " ".join(nums[:-1])
    cells = p.answer.split()   # sudoku: swap two different cells of the first row
    j = next(j for j in range(1, 4) if cells[j] != cells[0])
    cells[0], cells[j] = cells[j], cells[0]
    return " ".join(cells)


@pytest.mark.parametrize("name", SPLIT_TASKS)
def test_splits_are_disjoint(name):
    task = get_task(name)
    problems = {s: task.problems(s, N) for s in SPLITS}
    keys = {s: {task.split_key(p) for p in problems[s]} for s in SPLITS}
    for s in SPLITS:
        assert len({p.prompt for p in problems[s]}) == N
        assert all(split_of(task.split_key(p)) == s for p in problems[s])
    assert not keys["train"] & keys["test"]
    assert not keys["train"] & keys["validation"]
    assert not keys["validation"] & keys["test"]
    rng = random.Random(0)
    drawn = [task.sample(rng, "train") for _ in range(200)]
    assert all(task.split(p) == "train" for p in drawn)
    assert not {task.split_key(p) for p in drawn} & keys["test"]


def test_sudoku_test_grids_never_occur_in_training():
    task = get_task("sudoku")
    grids = {s: {p.solution for p in task.problems(s, 300)} for s in SPLITS}
    assert not grids["test"] & grids["train"] and not grids["validation"] & grids["train"]
    assert len(grids["test"]) >= 20   # many unseen grids, not one
    rng = random.Random(1)
    assert not {task.sample(rng, "train").solution for _ in range(2000)} & grids["test"]
    blanks = [p.meta["blanks"] for p in task.problems("test", 300)]
    assert min(blanks) == 6 and max(blanks) == 12


def _held_out_pattern(wording: str):
    """A regex matching a sentence written with `wording` (placeholders -> word groups)."""
    import re

    body = re.escape(wording[0].upper() + wording[1:] if not wording.startswith("{") else wording)
    body = re.sub(r"\\\{\w+\\\}", r"[\\w']+", body)
    body = body[:-2] + r"(?:\.| and )" if body.endswith(r"\.") else body  # "Tom has 4 pens and buys 3 more."
    return re.compile(r"\b" + body, re.IGNORECASE)


def test_held_out_wordings_never_occur_in_train_or_validation():
    from training.tasks.word_problems import HELD_OUT, LOSS, GAIN, QUESTION, START

    held = [w for lst, kind in ((START, "start"), (GAIN, "gain"), (LOSS, "loss"), (QUESTION, "question"))
            for w in lst[-HELD_OUT[kind]:]]
    assert len(held) >= 8
    patterns = [_held_out_pattern(w) for w in held]
    for name in ("word_problems", "word_problems_long"):
        task = get_task(name)
        for split in ("train", "validation", "test"):
            for p in task.problems(split, 300):
                assert not any(pat.search(p.prompt) for pat in patterns), (name, split, p.prompt)
    heldout = get_task(HELDOUT)
    tests = heldout.problems("test", 300)
    assert all(any(pat.search(p.prompt) for pat in patterns) for p in tests)
    for split in ("train", "validation"):
        with pytest.raises(ValueError, match="only a test split"):
            heldout.problems(split, 1)


def test_word_problems_are_varied_and_readable_by_the_tokenizer():
    from training.tasks.word_problems import GAIN, ITEMS, LOSS, NAMES, QUESTION, START
    from training.tokenizer import build_tokenizer

    assert len(NAMES) >= 40 and len(ITEMS) >= 30
    assert all(len(w) >= 6 + 2 for w in (START, GAIN, LOSS, QUESTION))   # >= 6 trained wordings each
    tok = build_tokenizer(samples_per_task=200)
    for name in ("word_problems", HELDOUT):
        for p in get_task(name).problems("test", 200):
            assert tok.unk_token_id not in tok(p.prompt, add_special_tokens=False)["input_ids"], p.prompt
    typed = "Tom has 4 apples. He buys 3 more apples. How many apples does Tom have now?"
    assert tok.unk_token_id not in tok(typed, add_special_tokens=False)["input_ids"]
    task = get_task("word_problems")
    prompts = [p.prompt for p in task.problems("train", 400)]
    assert any(" 1 " in p and not p.split(" 1 ")[1].split()[0].endswith("s") for p in prompts)  # singular
    assert any(w in p.split() for p in prompts for w in ("three", "five", "seven"))  # numbers as words


def test_sample_rejects_an_unknown_split():
    with pytest.raises(ValueError, match="split='dev'"):
        get_task("sorting").sample(random.Random(0), "dev")
    with pytest.raises(ValueError, match="unknown task"):
        get_task("nope")


@pytest.mark.parametrize("name", GENERATED)
def test_problems_are_deterministic(name):  # every family has a test split
    a = get_task(name).problems("test", 20)
    b = get_task(name).problems("test", 20)
    assert [(p.prompt, p.solution, p.answer) for p in a] == [(p.prompt, p.solution, p.answer) for p in b]
    assert len({p.prompt for p in a}) == 20
    assert get_task(name).problems("test", 20, seed=1) != a


def test_word_problem_responses_vary_and_all_verify():
    task = get_task("word_problems")
    p = next(p for p in task.problems("train", 50) if len(p.meta["ops"]) >= 2)
    rng = random.Random(0)
    responses = {task.respond(p.meta, rng) for _ in range(50)}
    assert len(responses) >= 5
    assert len({len(r.split()) for r in responses}) >= 3   # the response length is uncertain
    assert all(task.verify(r, p) for r in responses)


def test_word_problem_extracts_the_last_number():
    task = get_task("word_problems")
    assert task.extract("12 + 3 = 15 . The answer is 15 .") == "15"
    assert task.extract("no number") is None


def test_sudoku_verify_rejects_rule_and_given_violations():
    task = get_task("sudoku")
    p = task.problems("test", 1)[0]
    grid = [int(c) for c in p.answer.split()]
    assert task.verify(p.answer, p)
    # breaks a rule: change one cell (its row then holds a repeated digit)
    broken = grid.copy()
    broken[5] = grid[5] % 4 + 1
    assert not valid_grid(broken) and not task.verify(" ".join(map(str, broken)), p)
    # obeys every rule but contradicts a given
    givens = p.meta["givens"]
    other = next(g for g in _solutions() if any(g[i] != v for i, v in givens.items()))
    assert valid_grid(list(other)) and not task.verify(" ".join(map(str, other)), p)
    # too short / out-of-range digits
    assert not task.verify(" ".join(map(str, grid[:15])), p)
    assert not task.verify(" ".join(map(str, grid[:15] + [5])), p)


def test_sudoku_grids_are_valid_and_givens_come_from_the_prompt():
    grids = _solutions()
    assert len(set(grids)) == len(grids) and all(valid_grid(list(g)) for g in grids)
    task = get_task("sudoku")
    p = task.problems("train", 1)[0]
    bare = dataclasses.replace(p, meta={})   # givens recovered from the prompt text
    assert task.verify(p.answer, bare)
    assert not task.verify(_corrupt("sudoku", p), bare)
