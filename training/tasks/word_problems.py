"""GSM8K-like word problems in many phrasings, with short chains of + / - steps and *varied* responses.

Prompts are written the way people type them: >= 6 wordings per sentence type (start, gain, loss,
question), 48 names with their pronouns, 32 items with singular and plural, numbers sometimes as
words, both clause orders where English allows ("Mia gives Tom 3 pens." / "Tom gets 3 pens from
Mia."), punctuation attached to words. A few wordings are held out: they appear only in the
`word_problems_heldout` family, which has only a test split, so its accuracy measures phrasing the
model never saw (issue 10). Held-out wordings reuse words of the training wordings in new orders,
so they are readable, just unseen.

Responses vary the way real model outputs do (operand order, wording, merged or restated steps,
different closing sentences), so the response length is uncertain before the EOS padding: the
condition under which confidence heuristics fail in full diffusion (paper 5.3). The answer is the
last number of the response. Training pads responses to a canvas drawn from `train_gen_lengths`
(LLaDA's SFT pads with EOS far past most answers), so serving at the long canvas is in
distribution and full diffusion meets the same mass of confident EOS that LLaDA does.
"""

from __future__ import annotations

import random
import re

from .base import LastNumberAnswer, Problem, Task

NAMES = [("Mia", "she"), ("Tom", "he"), ("Ana", "she"), ("Ben", "he"), ("Lily", "she"), ("Sam", "he"),
         ("Zoe", "she"), ("Max", "he"), ("Eva", "she"), ("Leo", "he"), ("Ivy", "she"), ("Jack", "he"),
         ("Emma", "she"), ("Noah", "he"), ("Olivia", "she"), ("Liam", "he"), ("Sophia", "she"), ("Lucas", "he"),
         ("Ava", "she"), ("Ethan", "he"), ("Grace", "she"), ("Owen", "he"), ("Chloe", "she"), ("Ryan", "he"),
         ("Nora", "she"), ("Adam", "he"), ("Ella", "she"), ("David", "he"), ("Maya", "she"), ("John", "he"),
         ("Sara", "she"), ("Omar", "he"), ("Lucy", "she"), ("Ali", "he"), ("Hannah", "she"), ("Paul", "he"),
         ("Rosa", "she"), ("Kevin", "he"), ("Amy", "she"), ("Peter", "he"), ("Julia", "she"), ("Mark", "he"),
         ("Nina", "she"), ("Carlos", "he"), ("Kate", "she"), ("Daniel", "he"), ("Alice", "she"), ("Yuki", "she")]
ITEMS = [("apple", "apples"), ("pen", "pens"), ("card", "cards"), ("book", "books"), ("coin", "coins"),
         ("shell", "shells"), ("sticker", "stickers"), ("marble", "marbles"), ("cookie", "cookies"),
         ("stamp", "stamps"), ("pencil", "pencils"), ("toy", "toys"), ("orange", "oranges"), ("egg", "eggs"),
         ("candy", "candies"), ("balloon", "balloons"), ("flower", "flowers"), ("cupcake", "cupcakes"),
         ("banana", "bananas"), ("ball", "balls"), ("car", "cars"), ("rock", "rocks"), ("box", "boxes"),
         ("cherry", "cherries"), ("peach", "peaches"), ("doll", "dolls"), ("lemon", "lemons"), ("bead", "beads"),
         ("crayon", "crayons"), ("muffin", "muffins"), ("ribbon", "ribbons"), ("puzzle", "puzzles")]
NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
MAX_VALUE = 60

# Placeholders: {N} name, {P} pronoun (capitalised where a sentence starts), {p} pronoun, {o} object
# pronoun, {s} possessive, {O} another person, {n} a number, {it} the item word agreeing with {n},
# {items} the plural. The last wordings of each list (after the marker index) are held out.
START = ["{N} has {n} {it}.", "{N} had {n} {it}.", "{N} has {n} {it} at first.", "There are {n} {it} in {N}'s bag.",
         "{N} starts with {n} {it}.", "{N} owns {n} {it}.", "At first, {N} has {n} {it}.",
         "{N} has a box of {n} {it}.",
         # held out
         "In {N}'s bag there are {n} {it}.", "{N} had a bag with {n} {it}."]
GAIN = ["{P} buys {n} more {it}.", "{P} buys {n} more.", "{P} finds {n} more {it}.", "{P} gets {n} more.",
        "{O} gives {o} {n} more {it}.", "{P} gets {n} {it} from {O}.", "{P} wins {n} more.",
        "{P} picks up {n} more {it}.", "{s_cap} mom gives {o} {n} {it}.",
        # held out
        "{O} gives {n} {it} to {o}.", "{P} gets {n} more from {O}."]
LOSS = ["{P} gives {n} to {O}.", "{P} gave {n} of them to {s} friend.", "{P} loses {n} {it}.", "{P} sells {n}.",
        "{P} gives away {n}.", "{O} takes {n} {it} from {o}.", "{P} eats {n} of them.", "{P} lost {n} of them.",
        "{P} gives {n} {it} to {s} friend.",
        # held out
        "{P} gives {O} {n} of them.", "{n} of {s} {items} are lost."]
QUESTION = ["How many {items} does {N} have now?", "How many {items} does {p} have now?",
            "How many {items} are left?", "How many {items} does {N} have in the end?",
            "How many does {p} have left?", "How many {items} does {N} have left?",
            "How many {items} does {N} have?",
            # held out
            "How many {items} are there now?", "Now how many {items} does {N} have?"]
HELD_OUT = {"start": 2, "gain": 2, "loss": 2, "question": 2}  # the last k wordings of each list
LEADS = ["Then", "Later", "Next", "After that,"]


def _split_wordings(wordings: list[str], kind: str, heldout: bool) -> list[str]:
    k = HELD_OUT[kind]
    return wordings[-k:] if heldout else wordings[:-k]


class WordProblems(LastNumberAnswer, Task):
    """name: 'word_problems' (1-3 steps), 'word_problems_long' (4-6 steps) or 'word_problems_heldout'
    (1-3 steps, every problem uses at least one held-out wording; test split only)."""

    def __init__(self, min_ops: int = 1, max_ops: int = 3, gen_length: int = 48, block_length: int = 8,
                 name: str = "word_problems", heldout: bool = False, train_gen_lengths: tuple = ()):
        self.min_ops, self.max_ops = min_ops, max_ops
        self.gen_length, self.block_length, self.name = gen_length, block_length, name
        self.heldout = heldout
        self.train_gen_lengths = tuple(train_gen_lengths) or (gen_length,)
        self.wordings = {kind: _split_wordings(w, kind, False)
                         for kind, w in (("start", START), ("gain", GAIN), ("loss", LOSS), ("question", QUESTION))}
        self.heldout_wordings = {kind: _split_wordings(w, kind, True)
                                 for kind, w in (("start", START), ("gain", GAIN), ("loss", LOSS),
                                                 ("question", QUESTION))}

    def sample(self, rng: random.Random, split: str = "train") -> Problem:
        if self.heldout and split != "test":
            raise ValueError(f"{self.name} has only a test split (held-out phrasing), not {split!r}")
        return super().sample(rng, split)

    def _pick(self, rng: random.Random, kind: str, force_heldout: bool) -> str:
        return rng.choice(self.heldout_wordings[kind] if force_heldout else self.wordings[kind])

    def draw(self, rng: random.Random) -> Problem:
        (name, pron), (one, many) = rng.choice(NAMES), rng.choice(ITEMS)
        other = rng.choice([n for n, _ in NAMES if n != name])
        obj, poss = {"she": ("her", "her"), "he": ("him", "his")}[pron]
        n_ops = rng.randint(self.min_ops, self.max_ops)
        kinds = ["start"] + ["gain" if rng.random() < 0.5 else "loss" for _ in range(n_ops)] + ["question"]
        held = rng.randrange(len(kinds)) if self.heldout else -1  # which sentence uses a held-out wording
        value = rng.randint(2, 30)
        values, ops, sentences = [value], [], []
        for i, kind in enumerate(kinds):
            if kind in ("gain", "loss"):
                plus = value < 4 or (value + 2 <= MAX_VALUE and kind == "gain")
                kind = "gain" if plus else "loss"
                n = rng.randint(2, min(9, MAX_VALUE - value)) if plus else rng.randint(1, min(9, value - 1))
            else:
                n = value
            text = self._pick(rng, kind, i == held)
            if kind in ("gain", "loss") and i > 1 and not text.startswith("{n}") and rng.random() < 0.5:
                lead = rng.choice(LEADS)  # "Then she buys 3 more." / "After that, Tom gives ..."
                text = lead + " " + text.replace("{P}", "{p}", 1).replace("{s_cap}", "{s}", 1)
            shown = NUMBER_WORDS[n] if kind != "start" and n <= 10 and rng.random() < 0.2 else str(n)
            sentence = text.format(N=name, P=pron.capitalize(), p=pron, o=obj, s=poss, s_cap=poss.capitalize(),
                                   O=other, n=shown, it=one if n == 1 else many, items=many)
            sentences.append(sentence[0].upper() + sentence[1:])
            if kind in ("gain", "loss"):
                value = value + n if kind == "gain" else value - n
                ops.append(("+" if kind == "gain" else "-", n))
                values.append(value)
        if (sentences[0].startswith(name + " ") and sentences[1].startswith(pron.capitalize() + " ")
                and rng.random() < 0.2):
            # "Tom has 4 apples and buys 3 more." (two clauses in one sentence)
            sentences[0:2] = [sentences[0][:-1] + " and " + sentences[1][len(pron) + 1:]]
        prompt = " ".join(sentences)
        meta = {"name": name, "pron": pron, "items": many, "start": values[0], "ops": ops}
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

    def words(self) -> set[str]:
        """Every word a prompt or response of the *training* wordings can contain (lowercased, before
        punctuation splitting): the tokenizer's vocabulary source, so no held-out-only word exists."""
        out = {n.lower() for n, _ in NAMES} | {w for pair in ITEMS for w in pair} | set(NUMBER_WORDS)
        out |= {"she", "he", "her", "him", "his", "starts", "with", "has", "the", "answer", "is", "so", "then", "now"}
        for wordings in self.wordings.values():
            for w in wordings:
                out.update(re.sub(r"\{\w+\}", " ", w).lower().split())
        for lead in LEADS:
            out.update(lead.lower().split())
        return out
