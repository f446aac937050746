"""Task families, by name. Each is a `Task` with seeded generation, a verifier and fixed splits."""

from .base import SPLITS, Problem, Task, split_of
from .everyday import EverydayProblems
from .handwritten import HandWritten
from .puzzles import Arithmetic, Facts, Sorting, Sudoku
from .real import GSM8KFile, MATHFile
from .word_problems import WordProblems

TASKS = {
    # trained on EOS-padded canvases up to 128 (LLaDA-style SFT padding); served at 48 semi-AR, and
    # at 128 in the full-diffusion collapse setting
    "word_problems": lambda: WordProblems(train_gen_lengths=(48, 64, 96, 128)),
    "word_problems_long": lambda: WordProblems(4, 6, gen_length=96, block_length=16, name="word_problems_long",
                                               train_gen_lengths=(96, 128)),
    "word_problems_heldout": lambda: WordProblems(name="word_problems_heldout", heldout=True),
    "sudoku": lambda: Sudoku(),
    "sorting": lambda: Sorting(),
    "arithmetic": lambda: Arithmetic(),
    # v3 (embedded dLLM v3): everyday English word problems, their held-out wordings and things,
    # the hand-written test set, and the + - x / fact drill they rest on
    "everyday": lambda: EverydayProblems(),
    "everyday_heldout": lambda: EverydayProblems(name="everyday_heldout", heldout=True),
    "handwritten": lambda: HandWritten(),
    "facts": lambda: Facts(),
}


FILE_TASKS = {"gsm8k": GSM8KFile, "math": MATHFile}


def check_task_name(name: str) -> None:
    """Raise ValueError unless `name` is a generated family or a `gsm8k:PATH` / `math:PATH` spec
    (the file itself is read only by `get_task`)."""
    family, sep, path = name.partition(":")
    if sep and family in FILE_TASKS:
        if not path:
            raise ValueError(f"task {name!r}: give the file, e.g. {family}:/data/{family}/test.parquet")
    elif name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known: {sorted(TASKS)} or "
                         f"{' / '.join(f + ':PATH' for f in FILE_TASKS)} for a local file")


def get_task(name: str) -> Task:
    """A generated family by name, or a local file as `gsm8k:PATH` / `math:PATH` (its test split)."""
    check_task_name(name)
    family, _, path = name.partition(":")
    return FILE_TASKS[family](path) if name not in TASKS else TASKS[name]()


__all__ = ["FILE_TASKS", "SPLITS", "TASKS", "Arithmetic", "EverydayProblems", "Facts", "HandWritten", "GSM8KFile", "MATHFile", "Problem", "Task", "check_task_name", "get_task",
           "split_of"]
