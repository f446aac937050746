"""GSM8K-like word problems with short chains of + / - steps and *varied* responses.

Responses vary the way real model outputs do (operand order, wording, merged or restated steps,
different closing sentences), so the response length is uncertain before the EOS padding: the
condition under which confidence heuristics fail in full diffusion (issue 3, paper 5.3).
The answer is the last number of the response.
"""

from __future__ import annotations

import random
import re

from .base import Problem, Task

NAMES = [("Mia", "she"), ("Tom", "he"), ("Ana", "she"), ("Ben", "he"), ("Lily", "she"), ("Sam", "he"),
         ("Zoe", "she"), ("Max", "he"), ("Eva", "she"), ("Leo", "he"), ("Ivy", "she"), ("Jack", "he")]
ITEMS = ["apples", "pens", "cards", "books", "coins", "shells", "stickers", "marbles", "cookies", "stamps",
         "pencils", "toys"]
GAIN = ["buys {n} more", "finds {n} more", "gets {n} more", "wins {n} more"]
LOSS = ["gives {n} to {other}", "loses {n}", "sells {n}", "gives away {n}"]
QUESTIONS = ["How many {items} does {name} have now ?", "How many {items} does {name} have in the end ?"]
MAX_VALUE = 60

_NUM = re.compile(r"-?\d+")


class WordProblems(Task):
    """name: 'word_problems' (1-3 steps, L = 48) or 'word_problems_long' (4-6 steps, L = 96)."""

    def __init__(self, min_ops: int = 1, max_ops: int = 3, gen_length: int = 48, block_length: int = 8,
                 name: str = "word_problems"):
        self.min_ops, self.max_ops = min_ops, max_ops
        self.gen_length, self.block_length, self.name = gen_length, block_length, name

    def draw(self, rng: random.Random) -> Problem:
        (name, pron), items = rng.choice(NAMES), rng.choice(ITEMS)
        other = rng.choice([n for n, _ in NAMES if n != name])
        value = rng.randint(5, 30)
        values, ops = [value], []
        sentences = [f"{name} has {value} {items} ."]
        for _ in range(rng.randint(self.min_ops, self.max_ops)):
            plus = value < 4 or (value + 2 <= MAX_VALUE and rng.random() < 0.5)
            n = rng.randint(2, min(9, MAX_VALUE - value)) if plus else rng.randint(1, min(9, value - 1))
            verb = rng.choice(GAIN if plus else LOSS).format(n=n, other=other)
            lead = rng.choice(["Then", "Next", "Later"]) + f" {pron}" if ops else pron.capitalize()
            sentences.append(f"{lead} {verb} .")
            value = value + n if plus else value - n
            ops.append(("+" if plus else "-", n))
            values.append(value)
        sentences.append(rng.choice(QUESTIONS).format(items=items, name=name))
        prompt = " ".join(sentences)
        meta = {"name": name, "pron": pron, "items": items, "start": values[0], "ops": ops}
        return Problem(prompt, self.respond(meta, rng), str(value), self.name, meta)

    def respond(self, meta: dict, rng: random.Random) -> str:
        """One of many valid solutions for the problem described by `meta`."""
        name, pron, items = meta["name"], meta["pron"], meta["items"]
        parts = []
        if rng.random() < 0.3:
            parts.append(f"{name} starts with {meta['start']} {items} .")
        value, ops, i = meta["start"], meta["ops"], 0
        style = rng.random()  # one dominant wording per response, as a model would
        while i < len(ops):
            take = 2 if i + 1 < len(ops) and rng.random() < 0.25 else 1  # merged steps
            expr, new = str(value), value
            for sign, n in ops[i:i + take]:
                new = new + n if sign == "+" else new - n
                expr += f" {sign} {n}"
            if take == 1 and ops[i][0] == "+" and rng.random() < 0.3:
                expr = f"{ops[i][1]} + {value}"  # operand order
            if style < 0.4:
                step = f"{expr} = {new} ."
            elif style < 0.7:
                subject = pron.capitalize() if parts else name
                step = f"{subject} has {expr} = {new} {items} ."
            else:
                step = f"{rng.choice(['Then', 'So', 'Now'])} {expr} = {new} ."
            parts.append(step)
            value, i = new, i + take
        closing = rng.choice([f"The answer is {value} .", f"So {name} has {value} {items} .",
                              f"Answer : {value}", ""])
        if closing:
            parts.append(closing)
        return " ".join(parts)

    def extract(self, text: str):
        nums = _NUM.findall(text)
        return nums[-1] if nums else None

    def verify(self, text: str, problem: Problem) -> bool:
        got = self.extract(text)
        return got is not None and int(got) == int(problem.answer)
