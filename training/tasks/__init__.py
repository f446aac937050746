"""Task families, by name. Each is a `Task` with seeded generation, a verifier and fixed splits."""

from .base import SPLITS, Problem, Task, split_of
from .puzzles import Sorting, Sudoku
from .real import GSM8KFile, MATHFile
from .word_problems import WordProblems

TASKS = {
    "word_problems": lambda: WordProblems(),
    "word_problems_long": lambda: WordProblems(4, 6, gen_length=96, block_length=16, name="word_problems_long"),
    "sudoku": lambda: Sudoku(),
    "sorting": lambda: Sorting(),
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known: {sorted(TASKS)}")
    return TASKS[name]()


__all__ = ["SPLITS", "TASKS", "GSM8KFile", "MATHFile", "Problem", "Task", "get_task", "split_of"]
