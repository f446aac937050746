"""4x4 Sudoku (order matters: the sharpest test of a policy), list sorting (out-of-domain) and the
arithmetic drill (the + / - facts the word problems need, several per sample)."""

from __future__ import annotations

import itertools
import random
import re

from .base import Problem, Task

_BASE = [[1, 2, 3, 4], [3, 4, 1, 2], [2, 1, 4, 3], [4, 3, 2, 1]]
_DIGITS = re.compile(r"\d+")


def _solutions() -> list[tuple[int, ...]]:
    """All 288 valid 4x4 grids (enumerated: each row a permutation, checked by `valid_grid`).
    Puzzles are split by their solution grid, so a test puzzle's grid never occurs in training."""
    rows = list(itertools.permutations([1, 2, 3, 4]))
    out = []
    for r0 in rows:
        for r1 in rows:
            if not _fits([r0, r1]):
                continue
            for r2 in rows:
                if _fits([r0, r1, r2]):
                    out.extend(g for r3 in rows if valid_grid(g := [*r0, *r1, *r2, *r3]))
    return sorted(tuple(g) for g in out)


def _fits(rows) -> bool:
    """No column repeats, and the first two rows fill the top 2x2 boxes."""
    if any(len(set(col)) < len(col) for col in zip(*rows)):
        return False
    return len(rows) != 2 or all(len({rows[0][c], rows[0][c + 1], rows[1][c], rows[1][c + 1]}) == 4 for c in (0, 2))


def valid_grid(cells: list[int]) -> bool:
    if len(cells) != 16 or any(c not in (1, 2, 3, 4) for c in cells):
        return False
    g = [cells[4 * r:4 * r + 4] for r in range(4)]
    groups = g + [list(c) for c in zip(*g)]
    groups += [[g[r + i][c + j] for i in range(2) for j in range(2)] for r in (0, 2) for c in (0, 2)]
    return all(sorted(x) == [1, 2, 3, 4] for x in groups)


class Sudoku(Task):
    """Prompt: the grid row by row with '_' for blanks; response: the 16 digits of the solved grid."""

    name = "sudoku"
    gen_length = 16
    block_length = 4

    def __init__(self, min_blanks: int = 6, max_blanks: int = 12):
        self.min_blanks, self.max_blanks = min_blanks, max_blanks
        self._grids = None

    def draw(self, rng: random.Random) -> Problem:
        if self._grids is None:
            self._grids = _solutions()
        grid = rng.choice(self._grids)
        blanks = set(rng.sample(range(16), rng.randint(self.min_blanks, self.max_blanks)))
        cells = ["_" if i in blanks else str(v) for i, v in enumerate(grid)]
        rows = [" ".join(cells[4 * r:4 * r + 4]) for r in range(4)]
        prompt = "sudoku : " + " / ".join(rows)
        solution = " ".join(str(v) for v in grid)
        givens = {i: v for i, v in enumerate(grid) if i not in blanks}
        return Problem(prompt, solution, solution, self.name, {"givens": givens, "blanks": len(blanks)})

    def split_key(self, problem: Problem) -> str:
        return problem.solution

    def extract(self, text: str):
        return [int(d) for d in _DIGITS.findall(text)]

    def verify(self, text: str, problem: Problem) -> bool:
        cells = self.extract(text)
        givens = problem.meta.get("givens") or _givens_from_prompt(problem.prompt)
        return valid_grid(cells) and all(cells[int(i)] == v for i, v in givens.items())


def _givens_from_prompt(prompt: str) -> dict[int, int]:
    cells = [c for c in prompt.split(":", 1)[1].split() if c != "/"]
    return {i: int(c) for i, c in enumerate(cells) if c != "_"}


class Sorting(Task):
    """Out-of-domain family: 'sort : 15 3 9' -> '3 9 15'."""

    name = "sorting"
    gen_length = 8
    block_length = 4

    def draw(self, rng: random.Random) -> Problem:
        nums = [rng.randint(0, 60) for _ in range(rng.randint(3, 7))]
        answer = " ".join(str(n) for n in sorted(nums))
        return Problem("sort : " + " ".join(map(str, nums)), answer, answer, self.name, {})

    def extract(self, text: str):
        return [int(d) for d in _DIGITS.findall(text)]

    def verify(self, text: str, problem: Problem) -> bool:
        return self.extract(text) == [int(d) for d in problem.answer.split()]


class Arithmetic(Task):
    """Training drill for the fact table the word problems rest on (values <= 60, operands 1-9):
    'compute : 17 - 9 ; 4 + 3' -> '17 - 9 = 8 ; 4 + 3 = 7'. Each sample holds 3-4 facts, so a batch
    teaches several times more facts than a batch of word problems, at a third of the length."""

    name = "arithmetic"
    gen_length = 32
    block_length = 8

    def draw(self, rng: random.Random) -> Problem:
        facts = []
        for _ in range(rng.randint(3, 4)):
            a = rng.randint(1, 60)
            plus = a <= 58 and rng.random() < 0.5 or a < 2
            b = rng.randint(1, min(9, 60 - a)) if plus else rng.randint(1, min(9, a - 1))
            facts.append((a, "+" if plus else "-", b, a + b if plus else a - b))
        return self._problem(facts, {})

    def _problem(self, facts: list[tuple], meta: dict) -> Problem:
        """'compute : a op b ; ...' -> 'a op b = c ; ...' for facts (a, op, b, c)."""
        prompt = "compute : " + " ; ".join(f"{a} {op} {b}" for a, op, b, _ in facts)
        solution = " ; ".join(f"{a} {op} {b} = {c}" for a, op, b, c in facts)
        return Problem(prompt, solution, " ".join(str(c) for *_, c in facts), self.name, meta)

    def extract(self, text: str):
        return [int(c) for c in re.findall(r"=\s*(-?\d+)", text)]

    def verify(self, text: str, problem: Problem) -> bool:
        return self.extract(text) == [int(c) for c in problem.answer.split()]


class Facts(Arithmetic):
    """The v3 fact drill: every + - x / fact the everyday word problems use (values <= 60, a number
    added or taken away <= 12, products <= 60, halves): 'compute : 17 - 9 ; 4 x 3 ; 12 / 4' ->
    '17 - 9 = 8 ; 4 x 3 = 12 ; 12 / 4 = 3'. 3-4 facts per sample."""

    name = "facts"
    gen_length = 40
    block_length = 8

    def draw(self, rng: random.Random) -> Problem:
        facts = []
        for _ in range(rng.randint(3, 4)):
            op = rng.choices("+-x/", [3, 3, 2, 2])[0]
            if op == "+":
                b = rng.randint(1, 12)
                a = rng.randint(1, 60 - b)
                c = a + b
                if rng.random() < 0.3:  # "9 + 31": totals of two groups put the small one first
                    a, b = b, a
            elif op == "-":
                b = rng.randint(1, 12)
                a = rng.randint(b, 60)
                c = a - b
            else:
                x = 2 if rng.random() < 0.2 else rng.randint(2, 10)
                y = rng.randint(2, 30 if x == 2 else 60 // x)
                if rng.random() < 0.5:
                    x, y = y, x
                a, b, c = (x, y, x * y) if op == "x" else (x * y, x, y)
            facts.append((a, op, b, c))
        return self._problem(facts, {"facts": facts})
