"""Real GSM8K / MATH problems from files the user already has (jsonl or parquet, read with
`datasets`), in the paper's zero-shot eval format (paper 4) with the authors' answer checking.

Nothing is downloaded: pass the path of a local file, e.g. the `openai/gsm8k` test parquet
(columns question / answer) or a MATH / MATH-500 jsonl (columns problem / solution).

* Prompt: the system text below + "\\n\\n" + question, as one user message. The paper then applies
  the chat template and appends the literal `<reasoning>`; that prefix lives after the template,
  so it is exposed as `GENERATION_PREFIX` (and in `Problem.meta`), not baked into the prompt.
* GSM8K: ground truth after '####' (commas stripped). A generation's answer is the first
  parseable number in a \\boxed{}, else the last number inside <answer>...</answer>; correct when
  |answer - truth| < 1e-6 (authors' `extract_gsm_answer`, with brace matching and commas stripped).
* MATH: the last \\boxed{} of the generation against the last \\boxed{} of the reference solution,
  after light normalisation (spaces, \\left / \\right, a trailing '.', \\dfrac -> \\frac). This is
  stricter than the authors' `is_equiv`, which also rewrites units and some fractions.

A file is one split (default 'test'); asking it for another split is an error, so a test file can
never be drawn for training.
"""

from __future__ import annotations

import os
import random
import re

from .base import SPLITS, Problem, Task

SYSTEM_PROMPT = (
    "You are a math expert. You will be given a question to solve. Solve it step by step. "
    "Wrap the final answer in a \\boxed{}.\n"
    "Respond in the following format:\n<reasoning>\nYour reasoning here\n</reasoning>\n"
    "<answer>\n\\boxed{...}\n</answer>"
)
GENERATION_PREFIX = "<reasoning>"
TOLERANCE = 1e-6

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?|-?\.\d+")
_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_LATEX_SPACE = re.compile(r"\\[,;:! ]|\\quad|\\qquad")
_LEFT_RIGHT = re.compile(r"\\(?:left|right)(?![A-Za-z])")   # not \rightarrow


def format_prompt(question: str) -> str:
    return SYSTEM_PROMPT + "\n\n" + question.strip()


def boxed_contents(text: str) -> list[str]:
    """Contents of every \\boxed{...} (or \\fbox{...}) in order, with nested braces matched.
    An unclosed box (a truncated generation) is ignored."""
    out = []
    for m in _BOX.finditer(text or ""):
        depth, start = 1, m.end()
        for i in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                out.append(text[start:i])
                break
    return out


def _to_float(s: str) -> float | None:
    try:
        return float(s)
    except ValueError:
        return None


def extract_gsm8k(text: str) -> float | None:
    """First parseable number in a \\boxed{}, else the last number inside <answer>...</answer>."""
    for content in boxed_contents(text):
        c = content.replace(",", "").strip()
        if not c or re.fullmatch(r"\.+", c):   # the prompt's own "\boxed{...}" placeholder
            continue
        value = _to_float(c)
        if value is None:
            numbers = _NUMBER.findall(c)
            value = float(numbers[0]) if numbers else None
        if value is not None:
            return value
    m = _ANSWER_TAG.search(text or "")
    if m:
        numbers = _NUMBER.findall(m.group(1).replace(",", ""))
        if numbers:
            return float(numbers[-1])
    return None


def gsm8k_truth(answer_field: str) -> str:
    """'... #### 1,080' -> '1080'."""
    if "####" not in answer_field:
        raise ValueError("no '####' before the final answer")
    truth = answer_field.split("####")[-1].strip().replace(",", "")
    if _to_float(truth) is None:
        raise ValueError(f"final answer {truth!r} is not a number")
    return truth


def normalize_math(answer: str) -> str:
    s = _LEFT_RIGHT.sub("", answer)
    s = _LATEX_SPACE.sub("", s)
    s = re.sub(r"\s+", "", s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    return s.rstrip(".")


def extract_math(text: str) -> str | None:
    """The last \\boxed{} of a generation (None if there is none)."""
    boxes = boxed_contents(text)
    return boxes[-1] if boxes else None


def read_rows(path: str) -> list[dict]:
    """A local .jsonl / .json / .parquet file as a list of dicts (via `datasets`)."""
    builders = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}
    ext = os.path.splitext(path)[1].lower()
    if ext not in builders:
        raise ValueError(f"{path}: expected a {sorted(builders)} file, got {ext or 'no extension'!r}")
    if not os.path.isfile(path):
        raise ValueError(f"{path}: file not found")
    from datasets import load_dataset

    return list(load_dataset(builders[ext], data_files=path, split="train"))


class FileTask(Task):
    """A fixed list of problems read from one local file. Subclasses set `family`, the default
    columns, and implement `_problem(row)`, `extract(text)` and `verify(text, problem)`."""

    family = "file"
    question_field = "question"
    answer_field = "answer"
    # the paper's semi-AR setting (L = 256, BL = 32), answers opened with "<reasoning>"
    gen_length = 256
    block_length = 32
    generation_prefix = GENERATION_PREFIX

    def __init__(self, path: str, split: str = "test", question_field: str | None = None,
                 answer_field: str | None = None, name: str | None = None):
        if split not in SPLITS:
            raise ValueError(f"split={split!r}: expected one of {SPLITS}")
        self.path, self.split = path, split
        self.question_field = question_field or self.question_field
        self.answer_field = answer_field or self.answer_field
        self.name = name or self.family
        rows = read_rows(path)
        if not rows:
            raise ValueError(f"{path}: no rows")
        missing = {self.question_field, self.answer_field} - set(rows[0])
        if missing:
            raise ValueError(f"{path}: no column {sorted(missing)}; columns are {sorted(rows[0])}")
        self._problems = []
        for i, row in enumerate(rows):
            try:
                self._problems.append(self._problem(row, i))
            except ValueError as err:
                raise ValueError(f"{path}: row {i}: {err}") from None

    def __len__(self) -> int:
        return len(self._problems)

    def _problem(self, row: dict, index: int) -> Problem:
        raise NotImplementedError

    def _check_split(self, split: str):
        if split != self.split:
            raise ValueError(f"{self.path} holds the {self.split!r} split, not {split!r}")

    def problems(self, split: str, n: int | None = None, seed: int = 0) -> list[Problem]:
        """The file's first n rows (all when n is None), in file order; `seed` is unused."""
        self._check_split(split)
        if n is not None and n > len(self._problems):
            raise ValueError(f"{self.path} has only {len(self._problems)} problems, {n} requested")
        return list(self._problems if n is None else self._problems[:n])

    def draw(self, rng: random.Random) -> Problem:
        return rng.choice(self._problems)

    def sample(self, rng: random.Random, split: str = "train") -> Problem:
        self._check_split(split)
        return self.draw(rng)

    def _meta(self, question: str, index: int) -> dict:
        return {"row": index, "question": question, "generation_prefix": GENERATION_PREFIX}


class GSM8KFile(FileTask):
    """GSM8K rows {question, answer: '... #### 72'}; numeric answer checking."""

    family = "gsm8k"

    def _problem(self, row, index):
        question, solution = str(row[self.question_field]), str(row[self.answer_field])
        return Problem(format_prompt(question), solution, gsm8k_truth(solution), self.name,
                       self._meta(question, index))

    def extract(self, text: str) -> float | None:
        return extract_gsm8k(text)

    def verify(self, text: str, problem: Problem) -> bool:
        got = extract_gsm8k(text)
        return got is not None and abs(got - float(problem.answer)) < TOLERANCE


class MATHFile(FileTask):
    """MATH / MATH-500 rows {problem, solution with a final \\boxed{}}; an `answer` column is used
    only when the solution has no \\boxed{}."""

    family = "math"
    question_field = "problem"
    answer_field = "solution"

    def _problem(self, row, index):
        question, solution = str(row[self.question_field]), str(row[self.answer_field])
        answer = extract_math(solution)
        if answer is None:
            answer = row.get("answer")
            if answer is None or not str(answer).strip():
                raise ValueError("the solution has no \\boxed{} answer and there is no 'answer' column")
        return Problem(format_prompt(question), solution, str(answer), self.name, self._meta(question, index))

    def extract(self, text: str) -> str | None:
        return extract_math(text)

    def verify(self, text: str, problem: Problem) -> bool:
        got = extract_math(text)
        return got is not None and normalize_math(got) == normalize_math(problem.answer)
