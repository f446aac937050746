"""Everyday word problems (embedded dLLM v3): the kinds of problem people type, in plain English.

Kinds: gains and losses with many everyday verbs (present or past tense), multiplication ("5 boxes
with 6 pencils in each box", "A spider has 8 legs"), division and halves ("shared equally among 3
children", "gave half of them away", "groups of 5"), comparisons ("3 more than", "4 fewer than",
"twice as many as", "how many more"), totals of two groups ("7 cats and 5 dogs; how many
animals"), ages, and chains of two or three of these. People add details that do not matter ("on a
sunny day", "green", "at school", "It is raining outside."): so does the generator.

Numbers stay in the range the arithmetic drill (`facts`) covers: every value <= 60, a number added
or taken away <= 12, products <= 60. Responses are worked steps ("3 x 6 = 18 . 18 - 4 = 14 .") in
varied wordings, then a closing sentence that repeats the name from the prompt.

Held out (family `everyday_heldout`, test split only): the last wordings of each sentence list and
the words of `HELDOUT_ITEMS`, so its accuracy measures phrasing and things the model never saw.
`augment` (used by the dLLM trainer on training problems) replaces details, the item word or the
name by the tokenizer's unknown token, so an unknown word in a non-essential place does not change
the answer.
"""

from __future__ import annotations

import random
import re

from . import everyday_words as W
from .base import LastNumberAnswer, Problem, Task

MAX_VALUE = 60
MAX_STEP = 12  # largest number added or taken away in one step
UNK = "[UNK]"
NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
                "eleven", "twelve"]
_FACT = re.compile(r"(-?\d+) ([-+x/]) (-?\d+) = (-?\d+)")


def wrong_facts(text: str) -> list[str]:
    """The worked steps of a response whose arithmetic is wrong: '6 + 9 = 22' -> ['6 + 9 = 22']."""
    out = []
    for a, op, b, c in _FACT.findall(text):
        a, b, c = int(a), int(b), int(c)
        right = {"+": a + b, "-": a - b, "x": a * b, "/": a / b if b else None}[op]
        if right != c:
            out.append(f"{a} {op} {b} = {c}")
    return out

# Sentence wordings. Placeholders: {N} name, {P}/{p} pronoun, {o} object pronoun, {s}/{s_cap} possessive,
# {O} another person, {n} number, {it} item agreeing with {n}, {items} plural, {V} verb phrase,
# {c}/{cs} container, {g}/{gs} group, {k} kind word. The last HELD of each list are held out.
HELD = 2
T = {
    "start": ["{N} has {n} {it}.", "{N} had {n} {it}.", "{N} has {n} {it} at first.", "There are {n} {it} in {N}'s bag.",
              "{N} starts with {n} {it}.", "{N} owns {n} {it}.", "At first, {N} has {n} {it}.", "{N} has got {n} {it}.",
              "{N} had {n} {it} in a box.", "{N} keeps {n} {it} in {s} room.",
              "In {N}'s bag there are {n} {it}.", "{N} had a bag with {n} {it}."],
    "gain": ["{P} {V} {n} more {it}.", "{P} {V} {n} more.", "{P} {V} another {n} {it}.", "{P} {V} {n} {it}.",
             "Then {p} {V} {n} more.", "Later {p} {V} {n} more {it}.", "After that, {p} {V} {n} more.",
             "{P} also {V} {n} {it}.", "Next, {p} {V} {n} {it}.",
             "{n} more {it} are {V} by {o}.", "Then {p} went and {V} {n} more."],
    "gift": ["{O} gives {o} {n} more {it}.", "{s_cap} {person} gives {o} {n} {it}.", "{P} gets {n} {it} from {O}.",
             "{O} gave {o} {n} {it}.", "{s_cap} {person} gave {o} {n} more.", "{P} got {n} more from {s} {person}.",
             "{O} gives {n} {it} to {o}.", "{P} receives {n} {it} as a gift from {O}."],
    "loss": ["{P} {V} {n} {it}.", "{P} {V} {n} of them.", "Then {p} {V} {n}.", "Later {p} {V} {n} of them.",
             "After that, {p} {V} {n} {it}.", "{P} {V} {n}.", "Next, {p} {V} {n} of {s} {items}.",
             "{n} of {s} {items} are {V}.", "{P} has to {V} {n} of them."],
    "give": ["{P} {V} {n} to {O}.", "{P} {V} {n} {it} to {s} {person}.", "{P} {V} {O} {n} of them.",
             "Then {p} {V} {n} to {s} {person}.", "{P} {V} {n} of them to {O}.",
             "{O} takes {n} {it} from {o}.", "{P} {V} {n} {it} to a friend.",
             "{n} {it} are given to {O}.", "{P} {V} {n} of {s} {items} to {O}."],
    "half": ["{P} gives half of them to {O}.", "{P} gives half of them away.", "{P} eats half of them.",
             "{P} sells half of {s} {items}.", "Then {p} gives away half.", "{P} loses half of them.",
             "Half of them are given to {s} {person}.", "{P} shares half with {s} {person}."],
    "share_q": ["{P} shares them equally among {n} {gs}. How many {items} does each {g} get?",
                "{P} splits them equally between {n} {gs}. How many {items} does each {g} get?",
                "{P} puts them into {n} {cs} equally. How many {items} are in each {c}?",
                "{P} divides them equally among {n} {gs}. How many does each {g} get?",
                "If {p} shares them equally with {n} {gs}, how many {items} does each {g} get?",
                "{P} gives them out equally to {n} {gs}. How many {items} does each {g} get?",
                "{n} {gs} share them equally. How many {items} does each {g} get?",
                "They are shared equally by {n} {gs}. How many {items} does each {g} get?"],
    "groups_q": ["{P} puts them in {cs} of {n}. How many {cs} does {p} fill?",
                 "{P} packs them into {cs} with {n} in each {c}. How many {cs} does {p} need?",
                 "{P} makes groups of {n}. How many groups are there?",
                 "{P} puts {n} {items} in each {c}. How many {cs} does {p} use?",
                 "If {p} puts {n} in each {c}, how many {cs} are there?",
                 "They are packed {n} to a {c}. How many {cs} are there?"],
    "mul_start": ["{N} has {a} {cs} with {b} {items} in each {c}.", "{N} has {a} {cs} of {b} {items}.",
                  "{N} bought {a} {cs} of {b} {items}.", "There are {a} {cs} with {b} {items} in each.",
                  "{N} has {a} {cs}. Each {c} has {b} {items}.", "Each {c} holds {b} {items}. {N} has {a} {cs}.",
                  "{N} fills {a} {cs} with {b} {items} each.", "{N} buys {a} {cs}, and each {c} has {b} {items}.",
                  "{N} has {a} {cs} and there are {b} {items} in every {c}.",
                  "{a} {cs} each have {b} {items} in them for {N}.", "{N} got {a} {cs} that hold {b} {items} each."],
    "parts_q": ["A {x} has {b} {parts}. How many {parts} do {a} {xs} have?",
                "Each {x} has {b} {parts}. How many {parts} are there on {a} {xs}?",
                "How many {parts} do {a} {xs} have if each {x} has {b} {parts}?",
                "There are {a} {xs}. Each {x} has {b} {parts}. How many {parts} are there in all?",
                "{a} {xs} with {b} {parts} each. How many {parts} is that?",
                "One {x} has {b} {parts}. How many {parts} do {a} {xs} have altogether?"],
    "rate_q": ["{N} {V} {b} {items} every day. How many {items} does {p} {Vb} in {a} days?",
               "Each day {N} {V} {b} {items}. How many {items} does {p} {Vb} in {a} days?",
               "{N} {V} {b} {items} a day for {a} days. How many {items} is that?",
               "For {a} days, {N} {V} {b} {items} each day. How many {items} in all?",
               "{N} {V} {b} {items} each week. How many {items} does {p} {Vb} in {a} weeks?",
               "In {a} days {N} {V} {b} {items} per day. How many {items} does {p} {Vb} in total?"],
    "two_start": ["{N} has {a} {it1} and {b} {it2}.", "{N} had {a} {it1} and {b} {it2}.",
                  "There are {a} {it1} and {b} {it2} in {N}'s room.", "{N} owns {a} {it1} and {b} {it2}.",
                  "{N} has {a} {it1}. {P} also has {b} {it2}.", "{N} keeps {a} {it1} and {b} {it2} at home.",
                  "{N} has {b} {it2} and {a} {it1}.", "{N} bought {a} {it1} and {b} {it2}.",
                  "{N} has {a} {it1} as well as {b} {it2}.", "{N} has {a} {it1}, plus {b} {it2}."],
    "total_q": ["How many {k} does {N} have?", "How many {k} does {p} have in all?", "How many {k} are there?",
                "How many {k} does {N} have altogether?", "How many {k} in total?", "How many {k} does {p} have now?",
                "What is the total number of {k}?", "How many {k} are there in all?"],
    "more_start": ["{N} has {a} {items}. {O} has {b} {items}.", "{N} has {a} {items} and {O} has {b} {items}.",
                   "{N} has {a} {items}, and {O} has {b}.", "{O} has {b} {items}. {N} has {a} {items}.",
                   "{N} collected {a} {items} and {O} collected {b} {items}.", "There are {a} {items} for {N} and {b} for {O}.",
                   "{N} owns {a} {items} while {O} owns {b} {items}."],
    "more_q": ["How many more {items} does {N} have than {O}?", "How many more does {N} have?",
               "How many more {items} does {N} have?", "How many {items} more does {N} have than {O}?",
               "What is the difference between them?", "How many fewer {items} does {O} have than {N}?",
               "How many more {items} does {N} have compared to {O}?", "By how many {items} is {N} ahead of {O}?"],
    "cmp": ["{O} has {k} more {items} than {N}.", "{O} has {k} fewer {items} than {N}.", "{O} has twice as many {items} as {N}.",
            "{O} has {k} more than {N}.", "{O} has {k} fewer than {p} does.", "{O} has twice as many as {N}.",
            "{O} has {k} more {items} than {p} has.", "{O} has {k} less {items} than {N}.", "{O} has double that.",
            "{O} owns {k} more {items} than {N}.", "{O} has {k} {items} fewer than {N}.", "{O} has two times as many {items}."],
    "cmp_q": ["How many {items} does {O} have?", "How many does {O} have?", "How many {items} does {O} have now?",
              "So how many {items} does {O} have?", "How many {items} are there for {O}?", "What does {O} have?",
              "How many {items} has {O} got?", "How many {items} does {O} own?"],
    "which_more": ["{N} has {a} {items}, which is {k} more than {O}.", "{N} has {a} {items}. That is {k} more than {O} has.",
                   "{N} has {a} {items}, {k} more than {O}.", "{N} has {k} more {items} than {O}. {N} has {a} {items}.",
                   "{N} has {a} {items}, which is {k} more than what {O} has.", "With {a} {items}, {N} has {k} more than {O}."],
    "age": ["{N} is {a} years old. {s_cap} {person} is {k} years older. How old is {s} {person}?",
            "{N} is {a}. {s_cap} {person} is {k} years older than {o}. How old is {s} {person}?",
            "{N} is {a} years old. {s_cap} {person} is {k} years younger. How old is {s} {person}?",
            "{N} is {a} years old. How old will {p} be in {k} years?", "{N} was {a} years old {k} years ago. How old is {p} now?",
            "{N} is {a} years old. How old was {p} {k} years ago?",
            "{N}'s {person} is {k} years older than {N}, who is {a}. How old is the {person}?",
            "In {k} years, how old will {N} be if {p} is {a} now?"],
    "own_q": ["How many {items} does {N} have now?", "How many {items} does {p} have now?", "How many {items} are left?",
              "How many {items} does {N} have left?", "How many does {p} have now?", "How many {items} does {N} have in the end?",
              "How many {items} does {p} have left?", "How many {items} does {N} have?", "How many are left?",
              "How many {items} does {N} have altogether?", "How many {items} now?",
              "How many {items} does {N} have at the end?", "Now how many {items} does {N} have?"],
}
T["scene_start"] = ["There are {n} {it} {where}.", "There were {n} {it} {where}.", "{where_cap} there are {n} {it}.",
                    "{n} {it} are {where}.", "There are {n} {it} {where} at first.", "{where_cap}, there were {n} {it}.",
                    "We see {n} {it} {where}.", "{N} sees {n} {it} {where}."]
T["scene_gain"] = ["{n} more {it} {V}.", "Then {n} more {V}.", "{n} more {V}.", "Later, {n} more {it} {V}.",
                   "After a while {n} {it} {V}.", "{n} other {it} {V} too."]
T["scene_loss"] = ["{n} {it} {V}.", "Then {n} of them {V}.", "{n} of them {V}.", "Later {n} {it} {V}.",
                   "After that, {n} {V}.", "Soon {n} {it} {V}."]
T["scene_q"] = ["How many {items} are {where} now?", "How many {items} are still {where}?", "How many {items} are there now?",
                "How many are left?", "How many {items} are left {where}?", "How many {items} are there?",
                "How many {items} are {where} in the end?", "Now how many are {where}?"]
T["twotimes"] = ["{N} {V} {a} {it1} {t1} and {b} more {t2}. How many {items} did {p} {Vb}?",
                 "{N} {V} {a} {it1} {t1}. {P} {V} {b} {it2} {t2}. How many {items} did {N} {Vb} in all?",
                 "{T1}, {N} {V} {a} {it1}. {T2}, {p} {V} {b} more. How many {items} did {p} {Vb} altogether?",
                 "{N} {V} {a} {it1} {t1}, then {b} {it2} {t2}. How many {items} did {N} {Vb} in total?",
                 "{N} {V} {a} {it1} {t1} and {b} {it2} {t2}. How many {items} is that?",
                 "{T1} {N} {V} {a} {it1} and {t2} {p} {V} {b}. How many did {p} {Vb}?",
                 "How many {items} did {N} {Vb} if {p} {V} {a} {t1} and {b} {t2}?",
                 "{N} {V} {a} {it1} {t1} and another {b} {t2}. How many {items} did {N} {Vb}?"]
T["act_cmp"] = ["{N} {V} {a} {items}. {O} {V} {k} more {items} than {N}. How many {items} did {O} {Vb}?",
                "{N} {V} {a} {items}. {O} {V} twice as many {items}. How many {items} did {O} {Vb}?",
                "{N} {V} {a} {items}. {O} {V} {k} fewer {items}. How many {items} did {O} {Vb}?",
                "{N} {V} {a} {items} and {O} {V} {k} more. How many {items} did {O} {Vb}?",
                "{N} {V} {a} {items}, and {O} {V} twice as many. How many did {O} {Vb}?",
                "{O} {V} {k} fewer {items} than {N}, who {V} {a}. How many {items} did {O} {Vb}?",
                "{N} {V} {a} {items} and {O} {V} {k} more {items} than {p} did. How many {items} did {O} {Vb}?",
                "{O} {V} {k} {items} more than {N}. {N} {V} {a} {items}. How many did {O} {Vb}?"]
T["money_q"] = ["How much money does {N} have now?", "How much money does {p} have left?", "How many dollars are left?",
                "How many dollars does {N} have now?", "How much does {N} have now?", "How much money is left?",
                "How much money does {N} have in the end?", "How many dollars does {p} have left?"]
T["share_q"][-HELD:-HELD] = ["{P} shared them equally among {n} {gs}. How many {items} did each {g} get?",
                             "{P} split them between {n} {gs}. How many {items} does each {g} get?",
                             "If {n} {gs} share them equally, how many {items} does each {g} get?",
                             "{P} put them into {n} {cs} equally. How many {items} are in each {c}?"]
LEADS = ["Then", "Later", "Next", "After that,", "Now"]


def _base_form(present: str) -> str:
    """'catches' -> 'catch', 'picks up' -> 'pick up', 'buys' -> 'buy' (for 'does she buy')."""
    head, _, rest = present.partition(" ")
    if head.endswith(("ches", "shes", "sses", "xes")):
        head = head[:-2]
    elif head.endswith("ies"):
        head = head[:-3] + "y"
    elif head.endswith("s"):
        head = head[:-1]
    return (head + " " + rest).strip()


def _fits(verb, kind) -> bool:
    return verb[2] is None or kind in verb[2]


class _Builder:
    """One problem being written: sentences, worked steps, and what the augmenter may replace."""

    def __init__(self, task: "EverydayProblems", rng: random.Random):
        self.task, self.rng = task, rng
        (self.name, self.pron) = rng.choice(W.NAMES)
        if rng.random() < 0.1:  # "The farmer has 30 sheep."
            self.name, self.pron = rng.choice(W.ROLES), rng.choice(["she", "he"])
        self.other = rng.choice([n for n, _ in W.NAMES if n != self.name])
        self.obj, self.poss = {"she": ("her", "her"), "he": ("him", "his")}[self.pron]
        self.person = rng.choice(W.PEOPLE)
        held_item = task.heldout and rng.random() < 0.5  # half the held-out problems are about unseen things
        self.one, self.many, self.kind = rng.choice(W.HELDOUT_ITEMS if held_item else W.ITEMS)
        self.past = rng.random() < 0.4
        self.steps: list[tuple[str, int]] = []  # (expression, result)
        self.details: list[str] = []
        self.wordings: list[str] = []  # the wordings used (tests check the held-out ones never leak)

    def swap(self) -> None:
        """Make the other person the subject (the question asks about them)."""
        self.name, self.other = self.other, self.name
        self.pron = dict(W.NAMES).get(self.name, self.pron)
        self.obj, self.poss = {"she": ("her", "her"), "he": ("him", "his")}[self.pron]

    def pick(self, kind: str) -> str:
        wordings = T[kind]
        train, held = wordings[:-HELD], wordings[-HELD:]
        if self.task.heldout and self.rng.random() < 0.5:
            text = self.rng.choice(held)
        else:
            text = self.rng.choice(train)
        self.wordings.append(text)
        return text

    def num(self, n: int, words_ok: bool = True) -> str:
        if words_ok and n < len(NUMBER_WORDS) and self.rng.random() < 0.15:
            return NUMBER_WORDS[n]
        return str(n)

    def fill(self, text: str, **kw) -> str:
        base = dict(N=self.name, P=self.pron.capitalize(), p=self.pron, o=self.obj, s=self.poss,
                    s_cap=self.poss.capitalize(), O=self.other, items=self.many, person=self.person)
        base.update(kw)
        out = text.format(**base)
        return out[0].upper() + out[1:]

    def verb_tuple(self, verbs) -> tuple:
        fit = [v for v in verbs if _fits(v, self.kind)] or [v for v in verbs if v[2] is None]
        return self.rng.choice(fit)

    def verb(self, verbs) -> str:
        v = self.verb_tuple(verbs)
        return v[1] if self.past else v[0]

    def item_word(self, n: int) -> str:
        word = self.one if n == 1 else self.many
        if self.rng.random() < 0.25:
            adj = self.rng.choice(self.rng.choice([W.COLOURS, W.SIZES, W.QUALITIES]))
            self.details.append(adj)
            return f"{adj} {word}"
        return word

    def step(self, a: int, op: str, b: int) -> int:
        c = {"+": a + b, "-": a - b, "x": a * b, "/": a // b}[op]
        self.steps.append((f"{a} {op} {b}", c))
        return c


class EverydayProblems(LastNumberAnswer, Task):
    """name: 'everyday' (1-3 steps) or 'everyday_heldout' (held-out wordings and things; test split)."""

    gen_length = 48
    block_length = 8
    EXAMPLE_KINDS = ("chain", "mul", "share", "cmp", "total", "more", "scene", "parts")  # the page shows one of each

    def __init__(self, name: str = "everyday", heldout: bool = False, train_gen_lengths: tuple = (48, 64, 96, 128)):
        self.name, self.heldout = name, heldout
        self.train_gen_lengths = tuple(train_gen_lengths)
        self.items = [*W.ITEMS, *W.HELDOUT_ITEMS] if heldout else list(W.ITEMS)

    def sample(self, rng: random.Random, split: str = "train") -> Problem:
        if self.heldout and split != "test":
            raise ValueError(f"{self.name} has only a test split (held-out wordings and words), not {split!r}")
        return super().sample(rng, split)

    # ---- generation -------------------------------------------------------------------------
    def draw(self, rng: random.Random) -> Problem:
        while True:
            b = _Builder(self, rng)
            kind = rng.choices(["chain", "mul", "share", "groups", "parts", "rate", "total", "more", "cmp",
                                "which", "age", "scene", "twotimes", "activity"],
                               [26, 11, 8, 4, 5, 5, 9, 5, 10, 3, 3, 5, 4, 5])[0]
            sentences, answer = getattr(self, "_" + kind)(b)
            if not self.heldout or self._unseen(b, sentences):
                break
        sentences = self._decorate(b, sentences)
        prompt = " ".join(sentences)
        meta = {"name": b.name, "pron": b.pron, "items": b.many, "one": b.one, "kind": kind, "steps": b.steps,
                "details": b.details, "other": b.other, "wordings": b.wordings}
        return Problem(prompt, self.respond(meta, rng), str(answer), self.name, meta)

    def _unseen(self, b: _Builder, sentences: list[str]) -> bool:
        """Does a held-out problem really use a held-out wording or a held-out thing?"""
        held_words = {w for item in W.HELDOUT_ITEMS for w in item[:2]}
        words = set(re.findall(r"[a-z]+", " ".join(sentences).lower()))
        return bool(set(b.wordings) & self.heldout_wordings() or words & held_words)

    def _events(self, b: _Builder, value: int, n_events: int, lead_first: bool = False) -> tuple[list[str], int]:
        out = []
        for i in range(n_events):
            choice = b.rng.choices(["gain", "gift", "make", "loss", "give", "half"], [3, 2, 1, 3, 2, 1])[0]
            if choice == "half" and value % 2:
                choice = "loss"
            if choice in ("loss", "give") and value < 3:
                choice = "gain"
            if choice in ("gain", "gift", "make") and value + 2 > MAX_VALUE:
                choice = "loss"
            if choice == "half":
                out.append(b.fill(b.pick("half")))
                value = b.step(value, "/", 2)
                continue
            if choice in ("gain", "gift", "make"):
                n = b.rng.randint(1, min(MAX_STEP, MAX_VALUE - value))
                verbs = W.MAKE if choice == "make" else W.GAIN
                text = b.pick("gift" if choice == "gift" else "gain")
                v = b.verb_tuple(verbs)
                V = v[1] if b.past or "are {V} by" in text else v[0]  # participle = past for these verbs
                sentence = b.fill(text, n=b.num(n), it=b.item_word(n), V=V)
                value = b.step(value, "+", n)
            else:
                n = b.rng.randint(1, min(MAX_STEP, value - 1))
                text = b.pick(choice)
                if choice == "loss":
                    v = b.verb_tuple(W.LOSS)
                    V = v[1] if b.past or "are {V}" in text else v[0]
                    if "has to {V}" in text:
                        V = _base_form(v[0])
                else:
                    v = b.rng.choice(W.GIVE)
                    V = v[1] if b.past else v[0]
                sentence = b.fill(text, n=b.num(n), it=b.item_word(n), V=V)
                value = b.step(value, "-", n)
            out.append(sentence)
        return out, value

    def _start(self, b: _Builder, value: int) -> str:
        text = b.pick("start")
        if b.past:
            text = text.replace("{N} has ", "{N} had ", 1)
        return b.fill(text, n=str(value), it=b.item_word(value))

    def _chain(self, b):
        value = b.rng.randint(3, 40)
        sentences = [self._start(b, value)]
        more, value = self._events(b, value, b.rng.randint(1, 3))
        return sentences + more + [b.fill(b.pick("money_q" if b.kind == "money" else "own_q"))], value

    def _scene(self, b):
        where = b.rng.choice(W.SCENE_PLACES)
        value = b.rng.randint(3, 40)
        first = b.fill(b.pick("scene_start"), n=value, it=b.item_word(value), where=where, where_cap=where.capitalize())
        out = [first]
        for _ in range(b.rng.randint(1, 2)):
            if value > 3 and (b.rng.random() < 0.5 or value + 2 > MAX_VALUE):
                n = b.rng.randint(1, min(MAX_STEP, value - 1))
                v = b.rng.choice(W.SCENE_LOSS)
                out.append(b.fill(b.pick("scene_loss"), n=b.num(n), it=b.item_word(n), V=v[1] if b.past else v[0]))
                value = b.step(value, "-", n)
            else:
                n = b.rng.randint(1, min(MAX_STEP, MAX_VALUE - value))
                v = b.rng.choice(W.SCENE_GAIN)
                out.append(b.fill(b.pick("scene_gain"), n=b.num(n), it=b.item_word(n), V=v[1] if b.past else v[0]))
                value = b.step(value, "+", n)
        return out + [b.fill(b.pick("scene_q"), where=where)], value

    def _twotimes(self, b):
        x = b.rng.randint(1, 40)
        y = b.rng.randint(1, min(MAX_STEP, MAX_VALUE - x))
        v = b.verb_tuple(W.GAIN + W.MAKE)
        t1, t2 = b.rng.sample(W.TIMES, 2)
        b.details += t1.split() + t2.split()
        text = b.fill(b.pick("twotimes"), V=v[1], Vb=_base_form(v[0]), a=x, b=y, it1=b.one if x == 1 else b.many,
                      it2=b.one if y == 1 else b.many, t1=t1, t2=t2, T1=t1.capitalize(), T2=t2.capitalize())
        return [text], b.step(x, "+", y)

    def _activity(self, b):
        present, past, base, unit, _ = b.rng.choice(W.ACTIVITIES)
        if b.rng.random() < 0.5:  # "Max reads 5 pages every day. How many pages does he read in 7 days?"
            a, n = self._mul_pair(b)
            b.many = unit
            text = b.fill(b.pick("rate_q"), V=present, Vb=base, a=a, b=n)
            return [text], b.step(n, "x", a)
        text = b.pick("act_cmp")
        a = b.rng.randint(2, 40)
        if "twice" in text:
            a = b.rng.randint(2, MAX_VALUE // 2)
            op, k = "x", 2
        elif "fewer" in text:
            op, k = "-", b.rng.randint(1, min(MAX_STEP, a - 1))
        else:
            a = b.rng.randint(2, MAX_VALUE - 2)
            op, k = "+", b.rng.randint(1, min(MAX_STEP, MAX_VALUE - a))
        b.many = unit
        sentence = b.fill(text, V=past, Vb=base, a=a, k=b.num(k))
        value = b.step(a, op, k) if op != "x" else b.step(2, "x", a)
        b.swap()
        return [sentence], value

    def _mul_pair(self, b):
        x = b.rng.randint(2, 10)
        y = b.rng.randint(2, min(12, MAX_VALUE // x))
        return x, y

    def _mul(self, b):
        a, n = self._mul_pair(b)
        c, cs = b.rng.choice(W.CONTAINERS)
        first = b.fill(b.pick("mul_start"), a=a, b=n, c=c, cs=cs)
        value = b.step(a, "x", n)
        more, value = self._events(b, value, b.rng.choice([0, 0, 1, 1, 2]))
        return [first] + more + [b.fill(b.pick("own_q"))], value

    def _share(self, b):
        q = b.rng.randint(2, 12)
        k = b.rng.randint(2, min(10, MAX_VALUE // q))
        total = q * k
        g, gs = b.rng.choice(W.GROUPS[:14])
        c, cs = b.rng.choice(W.CONTAINERS)
        pre = []
        if b.rng.random() < 0.3 and total > 4:
            start = b.rng.randint(1, min(MAX_STEP, total - 1))  # "has 7, finds 5 more, shares them"
            pre = [self._start(b, total - start), b.fill(b.pick("gain"), n=b.num(start), it=b.item_word(start),
                                                         V=b.verb(W.GAIN))]
            b.step(total - start, "+", start)
        else:
            pre = [self._start(b, total)]
        tail = b.fill(b.pick("share_q"), n=b.num(k), g=g, gs=gs, c=c, cs=cs)
        b.step(total, "/", k)
        return pre + [tail], q

    def _groups(self, b):
        q = b.rng.randint(2, 12)
        k = b.rng.randint(2, min(10, MAX_VALUE // q))
        c, cs = b.rng.choice(W.CONTAINERS)
        tail = b.fill(b.pick("groups_q"), n=b.num(k), c=c, cs=cs)
        start = self._start(b, q * k)
        b.step(q * k, "/", k)
        return [start, tail], q

    def _parts(self, b):
        x, xs, n, parts = b.rng.choice(W.PARTS)
        a = b.rng.randint(2, min(12, MAX_VALUE // n))
        text = b.fill(b.pick("parts_q"), x=x, xs=xs, parts=parts, a=a, b=n)
        b.many, b.one = parts, parts
        return [text], b.step(a, "x", n)

    def _rate(self, b):
        a, n = self._mul_pair(b)
        v = b.rng.choice([v for v in W.GAIN + W.MAKE if _fits(v, b.kind)])
        text = b.fill(b.pick("rate_q"), V=v[0], Vb=_base_form(v[0]), a=a, b=n)
        return [text], b.step(n, "x", a)

    def _total(self, b):
        same = [i for i in self.items if i[2] == b.kind and i[0] != b.one and i[2] != "money"]
        x, y = b.rng.randint(1, 40), b.rng.randint(1, MAX_STEP)
        if b.rng.random() < 0.5:
            x, y = y, x
        if x + y > MAX_VALUE or not same:
            x, y = b.rng.randint(1, 30), b.rng.randint(1, MAX_STEP)
        if not same or b.rng.random() < 0.3:  # "9 red cars and 7 blue cars"
            c1, c2 = b.rng.sample(W.COLOURS + W.SIZES, 2)
            it1 = f"{c1} {b.one if x == 1 else b.many}"
            it2, k = f"{c2} {b.one if y == 1 else b.many}", b.many
            b.details += [c1, c2]
        else:
            other = b.rng.choice(same)
            it1 = b.one if x == 1 else b.many
            it2 = other[0] if y == 1 else other[1]
            k = b.rng.choice(W.KIND_WORDS[b.kind])
        first = b.fill(b.pick("two_start"), a=x, b=y, it1=it1, it2=it2)
        value = b.step(x, "+", y)
        b.many = k
        more = []
        if b.rng.random() < 0.25 and value > 3:
            n = b.rng.randint(1, min(MAX_STEP, value - 1))
            more = [b.fill("{P} gives {n} of them to {O}.", n=b.num(n))]
            value = b.step(value, "-", n)
        return [first] + more + [b.fill(b.pick("total_q"), k=k)], value

    def _more(self, b):
        x = b.rng.randint(2, MAX_VALUE)
        y = b.rng.randint(max(1, x - MAX_STEP), x - 1) if x > 1 else 1
        first = b.fill(b.pick("more_start"), a=x, b=y)
        return [first, b.fill(b.pick("more_q"))], b.step(x, "-", y)

    def _cmp(self, b):
        text = b.pick("cmp")
        a = b.rng.randint(2, 40)
        if "twice" in text or "double" in text or "two times" in text:
            a = b.rng.randint(2, MAX_VALUE // 2)
            op, k = "x", 2
        elif "fewer" in text or "less" in text:
            k = b.rng.randint(1, min(MAX_STEP, a - 1))
            op = "-"
        else:
            a = b.rng.randint(2, MAX_VALUE - 2)
            k = b.rng.randint(1, min(MAX_STEP, MAX_VALUE - a))
            op = "+"
        first = self._start(b, a)
        value = b.step(a, op, k) if op != "x" else b.step(2, "x", a)
        sentences = [first, b.fill(text, k=b.num(k))]
        if b.rng.random() < 0.2 and value + 2 <= MAX_VALUE:
            n = b.rng.randint(1, min(MAX_STEP, MAX_VALUE - value))
            sentences.append(b.fill("{O} finds {n} more.", n=b.num(n)))
            value = b.step(value, "+", n)
        b.swap()  # the question is about the other person: responses name them
        return sentences + [b.fill(b.pick("cmp_q"), O=b.name)], value

    def _which(self, b):
        a = b.rng.randint(3, MAX_VALUE)
        k = b.rng.randint(1, min(MAX_STEP, a - 1))
        first = b.fill(b.pick("which_more"), a=a, k=b.num(k))
        b.swap()
        return [first, b.fill(b.pick("cmp_q"), O=b.name)], b.step(a, "-", k)

    def _age(self, b):
        text = b.pick("age")
        a = b.rng.randint(3, 50)
        minus = "younger" in text or "ago" in text and "was {a}" not in text
        k = b.rng.randint(1, min(MAX_STEP, a - 1) if minus else MAX_STEP)
        b.many = "years"
        return [b.fill(text, a=a, k=k)], b.step(a, "-" if minus else "+", k)

    def _decorate(self, b: _Builder, sentences: list[str]) -> list[str]:
        """Details a person adds that change nothing: a time or place, an aside, loose punctuation."""
        rng = b.rng
        out = list(sentences)
        for _ in range(rng.choice([0, 0, 1, 1, 2])):
            i = rng.randrange(len(out) - 1) if len(out) > 1 else 0
            s = out[i]
            if not s.endswith("."):
                continue
            phrase = rng.choice(W.PLACES + W.TIMES)
            b.details += phrase.split()
            if rng.random() < 0.5:
                out[i] = s[:-1] + " " + phrase + "."
            else:
                out[i] = phrase[0].upper() + phrase[1:] + ", " + s[0].lower() + s[1:] if not s.startswith(b.name) \
                    else phrase[0].upper() + phrase[1:] + ", " + s
        if len(out) > 2 and rng.random() < 0.25 and out[1].startswith(b.pron.capitalize() + " ") and out[0].endswith("."):
            joiner = rng.choice([" and", " but", ", and", ", then", " and then"])  # "had 18 pencils but lost 6"
            out[0:2] = [out[0][:-1] + joiner + out[1][len(b.pron):]]
        if rng.random() < 0.15 and len(out) > 1:
            aside = b.fill(rng.choice(W.ASIDES), colour=rng.choice(W.COLOURS))
            b.details += [w for w in re.findall(r"[a-z]+", aside.lower()) if w not in ("he", "she", "his", "her", "him", "is")]
            out.insert(rng.randrange(1, len(out)), aside)
        if rng.random() < 0.1:
            out[-1] = out[-1].rstrip("?.")
        if rng.random() < 0.1:
            out = [s.lower() for s in out]
        return out

    # ---- responses ----------------------------------------------------------------------------
    def respond(self, meta: dict, rng: random.Random, name: bool = True, items: bool = True) -> str:
        """One of many valid worked solutions. `name` / `items` False: never mention them (the
        augmenter's unknown-token problems, where copying the unknown word would print [UNK])."""
        who = meta["name"] if name else meta["pron"].capitalize()
        what = meta["items"] if items else ""
        parts, style = [], rng.random()
        for expr, c in meta["steps"]:
            if style < 0.45:
                parts.append(f"{expr} = {c} .")
            elif style < 0.7 and what:
                parts.append(f"{rng.choice(['So', 'That is', 'Now'])} {expr} = {c} {what} .")
            else:
                parts.append(f"{rng.choice(['Then', 'So', 'Now'])} {expr} = {c} .")
        value = meta["steps"][-1][1]
        closings = [f"The answer is {value} .", f"Answer : {value}"]
        if what:
            closings += [f"So {who} has {value} {what} .", f"{who} has {value} {what} ."]
        if meta["kind"] in ("share", "groups", "parts", "rate", "more", "age", "scene", "activity"):
            closings = [f"The answer is {value} .", f"Answer : {value}"]
        parts.append(rng.choice(closings))
        return " ".join(parts)

    def augment(self, problem: Problem, rng: random.Random, rate: float = 0.3, what: str = "") -> Problem:
        """Training-time robustness: with probability `rate`, replace 1-2 detail words, the item word
        or the name by the unknown token (the response then avoids the replaced word). `what`
        ("detail", "item" or "name") forces one kind; by default it is drawn 5:3:2."""
        if rng.random() >= rate:
            return problem
        meta, prompt = problem.meta, problem.prompt
        choice = what or rng.choices(["detail", "item", "name"], [5, 3, 2])[0]
        name, items = True, True
        if choice == "detail" and meta["details"]:
            targets = rng.sample(sorted(set(meta["details"])), min(2, len(set(meta["details"]))))
        elif choice == "item" and meta["kind"] in ("chain", "mul", "share", "cmp") and meta["one"] != meta["items"]:
            targets, items = [meta["one"], meta["items"]], False
        elif choice == "name":
            targets, name = [meta["name"]], False
        else:
            return problem
        for t in targets:
            prompt = re.sub(rf"(?i)\b{re.escape(t)}\b", UNK, prompt)
        return Problem(prompt, self.respond(meta, rng, name=name, items=items), problem.answer, problem.task, meta)

    def words(self) -> set[str]:
        """Every word the training wordings and lists can emit (lowercase): the vocabulary source."""
        out = {n.lower() for n, _ in W.NAMES} | {w for i in W.ITEMS for w in i[:2]} | set(NUMBER_WORDS)
        for group in (W.CONTAINERS, W.GROUPS):
            out |= {w for pair in group for w in pair}
        out |= {w for p in W.PARTS for w in (p[0], p[1], p[3])}
        for verbs in (W.GAIN, W.MAKE, W.LOSS):
            for v in verbs:
                out |= set(v[0].split()) | set(v[1].split()) | set(_base_form(v[0]).split())
        for v in W.GIVE:
            out |= set(v[0].split()) | set(v[1].split())
        for a in W.ACTIVITIES:
            out |= set(a)
        for v in W.SCENE_GAIN + W.SCENE_LOSS:
            out |= set(" ".join(v).split())
        for words in (W.ROLES, W.SCENE_PLACES, W.PEOPLE, W.COLOURS, W.SIZES, W.QUALITIES, W.PLACES, W.TIMES, W.ASIDES, LEADS,
                      [k for ks in W.KIND_WORDS.values() for k in ks]):
            for w in words:
                out |= set(re.sub(r"\{\w+\}", " ", w).lower().replace(",", " ").replace(".", " ").split())
        for kind, wordings in T.items():
            for w in wordings[:-HELD]:
                out |= set(re.sub(r"\{\w+\}", " ", w).lower().replace(",", " ").replace(".", " ")
                           .replace("?", " ").replace("'", " ").split())
        out |= {"she", "he", "her", "him", "his", "so", "then", "now", "the", "answer", "is", "that", "has", "x",
                "/", "years", "s"}
        return out

    def heldout_wordings(self) -> set[str]:
        return {w for wordings in T.values() for w in wordings[-HELD:]}
