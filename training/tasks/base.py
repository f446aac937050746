"""A verifiable task family: seeded problem generator, answer extractor, 0/1 verifier, splits.

Splits are fixed and disjoint by construction: a problem belongs to the split chosen by a stable
hash of its split key (80% train / 10% validation / 10% test), so a test problem can never be drawn
for training whatever the seed. The key is the prompt, or what must not leak between splits
(Sudoku: the solution grid, so test puzzles have grids never seen in training).
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass, field

SPLITS = ("train", "validation", "test")
_NUM = re.compile(r"-?\d+")


@dataclass(frozen=True)
class Problem:
    prompt: str
    solution: str  # one reference response (there may be many valid ones)
    answer: str
    task: str
    meta: dict = field(default_factory=dict, compare=False)


def split_of(key: str) -> str:
    h = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") % 100
    return "train" if h < 80 else ("validation" if h < 90 else "test")


class Task:
    """Subclasses set `name`, `gen_length`, `block_length` and implement `draw(rng)`,
    `extract(text)` and `verify(text, problem)`."""

    name: str = "task"
    gen_length: int = 48
    block_length: int = 8
    generation_prefix: str = ""  # the response starts with this text (see unmasker.DLLM.generation_prefix)
    train_gen_lengths: tuple = ()  # canvases the dLLM trainer pads responses to (empty: gen_length)

    def draw(self, rng: random.Random) -> Problem:
        raise NotImplementedError

    def extract(self, text: str):
        raise NotImplementedError

    def verify(self, text: str, problem: Problem) -> bool:
        raise NotImplementedError

    def augment(self, problem: Problem, rng: random.Random) -> Problem:
        """A training-time variant of a training problem (default: the problem itself). The dLLM
        trainer applies it to every training problem; evaluation never does."""
        return problem

    def split_key(self, problem: Problem) -> str:
        """What decides a problem's split (hashed by `split_of`)."""
        return problem.prompt

    def split(self, problem: Problem) -> str:
        return split_of(self.split_key(problem))

    def sample(self, rng: random.Random, split: str = "train") -> Problem:
        """Draw until the problem falls in `split`."""
        if split not in SPLITS:
            raise ValueError(f"split={split!r}: expected one of {SPLITS}")
        while True:
            p = self.draw(rng)
            if self.split(p) == split:
                return p

    def problems(self, split: str, n: int, seed: int = 1234) -> list[Problem]:
        """The fixed first n distinct problems of a split (same list on every machine)."""
        rng = random.Random(f"{self.name}/{split}/{seed}")
        seen, out = set(), []
        tries = 0
        while len(out) < n:
            p = self.sample(rng, split)
            tries += 1
            if p.prompt not in seen:
                seen.add(p.prompt)
                out.append(p)
            elif tries > 200 * n:
                raise ValueError(f"{self.name}/{split} has fewer than {n} distinct problems")
        return out

    def reward(self, texts: list[str], problems: list[Problem]) -> list[float]:
        return [1.0 if self.verify(t, p) else 0.0 for t, p in zip(texts, problems)]


class LastNumberAnswer:
    """Mixin for GSM8K-style families: the answer is the last number of the response."""

    def extract(self, text: str):
        nums = _NUM.findall(text)
        return nums[-1] if nums else None

    def verify(self, text: str, problem: Problem) -> bool:
        got = self.extract(text)
        return got is not None and int(got) == int(problem.answer)
