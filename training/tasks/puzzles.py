"""4x4 Sudoku (order matters: the sharpest test of a policy) and list sorting (out-of-domain)."""

from __future__ import annotations

import itertools
import random
import re

from .base import Problem, Task

_BASE = [[1, 2, 3, 4], [3, 4, 1, 2], [2, 1, 4, 3], [4, 3, 2, 1]]
_DIGITS = re.compile(r"\d+")


def _solutions() -> list[tuple[int, ...]]:
    """The 96 valid 4x4 grids reachable from one base grid by relabelling, row/column swaps inside
    bands/stacks, band swaps and transposition (of the 288 valid grids in all). Train and test
    puzzles differ in their givens but share this pool of solutions."""
    out = set()
    for perm in itertools.permutations([1, 2, 3, 4]):
        for rows in itertools.product([(0, 1), (1, 0)], [(2, 3), (3, 2)]):
            for bands in ([0, 1], [1, 0]):
                for cols in itertools.product([(0, 1), (1, 0)], [(2, 3), (3, 2)]):
                    for transpose in (False, True):
                        order = [rows[b][i] for b in bands for i in range(2)]
                        corder = [c for pair in cols for c in pair]
                        g = [[perm[_BASE[r][c] - 1] for c in corder] for r in order]
                        if transpose:
                            g = [list(x) for x in zip(*g)]
                        out.add(tuple(v for row in g for v in row))
    return sorted(out)


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

    def __init__(self, min_blanks: int = 6, max_blanks: int = 10):
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
