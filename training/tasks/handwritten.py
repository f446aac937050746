"""The hand-written test set: problems written the way a person types them (varied punctuation,
capitals, contractions, extra details), by a person, not by any generator. Data in
`data/handwritten.jsonl` (prompt, answer, kind). Test split only; never in training or validation,
and its words never reach the tokenizer (`heldout` is set, which `build_tokenizer` skips).
"""

from __future__ import annotations

import json
import os

from .base import LastNumberAnswer, Problem, Task

PATH = os.path.join(os.path.dirname(__file__), "data", "handwritten.jsonl")


class HandWritten(LastNumberAnswer, Task):
    name = "handwritten"
    gen_length = 48
    block_length = 8
    heldout = True  # no training or validation split; not a vocabulary source

    def __init__(self, path: str = PATH):
        with open(path) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        self._problems = [Problem(r["prompt"], "", str(r["answer"]), self.name, {"kind": r["kind"]}) for r in rows]

    def draw(self, rng):
        return rng.choice(self._problems)

    def sample(self, rng, split: str = "train") -> Problem:
        if split != "test":
            raise ValueError(f"{self.name} has only a test split (hand-written problems), not {split!r}")
        return self.draw(rng)

    def problems(self, split: str, n: int, seed: int = 1234) -> list[Problem]:
        """The first n hand-written problems, in file order (all of them when n is larger)."""
        if split != "test":
            raise ValueError(f"{self.name} has only a test split (hand-written problems), not {split!r}")
        return self._problems[:n]
