"""The synthetic task families: verifiers, fixed disjoint splits, determinism, varied responses."""

import dataclasses
import random

import pytest

from training.tasks import SPLITS, TASKS, get_task, split_of
from training.tasks.puzzles import _solutions, valid_grid

N = 40


@pytest.mark.parametrize("name", sorted(TASKS))
def test_reference_solutions_verify_and_wrong_answers_fail(name):
    task = get_task(name)
    for p in task.problems("validation", N):
        assert task.verify(p.solution, p), p
        assert task.reward([p.solution], [p]) == [1.0]
        wrong = _corrupt(name, p)
        assert not task.verify(wrong, p), (p, wrong)
        assert not task.verify("", p)


def _corrupt(name, p):
    if name.startswith("word_problems"):
        return p.solution + f" The answer is {int(p.answer) + 1} ."
    if name == "sorting":
        nums = p.answer.split()
        return " ".join(reversed(nums)) if nums != nums[::-1] else " ".join(nums[:-1])
    cells = p.answer.split()   # sudoku: swap two different cells of the first row
    j = next(j for j in range(1, 4) if cells[j] != cells[0])
    cells[0], cells[j] = cells[j], cells[0]
    return " ".join(cells)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_splits_are_disjoint(name):
    task = get_task(name)
    prompts = {s: {p.prompt for p in task.problems(s, N)} for s in SPLITS}
    for s in SPLITS:
        assert len(prompts[s]) == N
        assert all(split_of(p) == s for p in prompts[s])
    assert not prompts["train"] & prompts["test"]
    assert not prompts["train"] & prompts["validation"]
    assert not prompts["validation"] & prompts["test"]
    rng = random.Random(0)
    drawn = [task.sample(rng, "train").prompt for _ in range(200)]
    assert all(split_of(p) == "train" for p in drawn)
    assert not set(drawn) & prompts["test"]


def test_sample_rejects_an_unknown_split():
    with pytest.raises(ValueError, match="split='dev'"):
        get_task("sorting").sample(random.Random(0), "dev")
    with pytest.raises(ValueError, match="unknown task"):
        get_task("nope")


@pytest.mark.parametrize("name", sorted(TASKS))
def test_problems_are_deterministic(name):
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
