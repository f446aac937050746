"""The v3 task families: everyday word problems, their held-out wordings and things, the hand-written
test set and the fact drill. Model-free: generation, splits, leakage, augmentation, verifiers."""

import random
import re

import pytest

from training.tasks import TASKS, get_task
from training.tasks import everyday_words as W
from training.tasks.everyday import UNK, wrong_facts

HELD_WORDS = {w for item in W.HELDOUT_ITEMS for w in item[:2]}


def _words(text):
    return set(re.findall(r"[a-z]+", text.lower()))


@pytest.fixture(scope="module")
def train_problems():
    task, rng = get_task("everyday"), random.Random(0)
    return [task.sample(rng, "train") for _ in range(3000)]


def test_wrong_facts_by_hand():
    assert wrong_facts("6 + 9 = 22 . 22 - 4 = 18 .") == ["6 + 9 = 22"]
    assert wrong_facts("3 x 6 = 18 . 18 / 2 = 9 . The answer is 9 .") == []
    assert wrong_facts("12 / 5 = 2") == ["12 / 5 = 2"]  # division must be exact


def test_generated_solutions_are_right_and_fit(train_problems):
    task = get_task("everyday")
    kinds = set()
    for p in train_problems:
        kinds.add(p.meta["kind"])
        assert task.verify(p.solution, p), (p.prompt, p.solution)
        assert wrong_facts(p.solution) == [], p.solution
        assert all(0 <= c <= 60 for _, c in p.meta["steps"]), p.meta["steps"]
        assert len(p.solution.split()) < task.gen_length
    assert kinds >= {"chain", "mul", "share", "groups", "parts", "rate", "total", "more", "cmp", "which", "age",
                     "scene", "twotimes", "activity"}


def test_new_operations_appear_in_prompts(train_problems):
    text = " ".join(p.prompt.lower() for p in train_problems)
    for phrase in ("in each", "equally", "half of them", "more", "fewer", "twice as many", "how many more", "years old"):
        assert phrase in text, phrase


def test_heldout_wordings_and_items_never_in_train_or_validation(train_problems):
    task, rng = get_task("everyday"), random.Random(1)
    held = task.heldout_wordings()
    val = [task.sample(rng, "validation") for _ in range(500)]
    for p in train_problems + val:
        assert not set(p.meta["wordings"]) & held, p.meta["wordings"]
        assert not _words(p.prompt) & HELD_WORDS, p.prompt
        assert not _words(p.solution) & HELD_WORDS


def test_heldout_family_is_test_only_and_always_unseen():
    task = get_task("everyday_heldout")
    held = task.heldout_wordings()
    with pytest.raises(ValueError, match="only a test split"):
        task.sample(random.Random(0), "train")
    probs = task.problems("test", 300)
    for p in probs:
        assert set(p.meta["wordings"]) & held or _words(p.prompt) & HELD_WORDS, p.prompt
    assert sum(bool(_words(p.prompt) & HELD_WORDS) for p in probs) > 30  # held-out things do occur


def test_heldout_words_are_not_in_the_vocabulary():
    from training.tokenizer import build_tokenizer

    vocab = build_tokenizer(samples_per_task=200).get_vocab()
    assert not HELD_WORDS & set(vocab)
    assert len(vocab) >= 1500


def test_augment_replaces_nonessential_words_and_keeps_the_answer(train_problems):
    task, rng = get_task("everyday"), random.Random(2)
    changed = 0
    for p in train_problems[:400]:
        q = task.augment(p, rng, rate=1.0)
        assert q.answer == p.answer and q.meta["steps"] == p.meta["steps"]
        assert task.verify(q.solution, q)
        if q.prompt != p.prompt:
            changed += 1
            assert UNK in q.prompt and UNK not in q.solution
            assert all(n in q.prompt for n in re.findall(r"\d+", p.prompt))  # no number is ever replaced
            if p.meta["name"].lower() not in q.prompt.lower():
                assert p.meta["name"] not in q.solution  # an unknown name is not invented in the answer
    assert changed > 200
    assert task.augment(train_problems[0], rng, rate=0.0) is train_problems[0]


def test_handwritten_set_is_data_test_only_and_not_generated(train_problems):
    task = get_task("handwritten")
    probs = task.problems("test", 1000)
    assert len(probs) >= 60 and len({p.prompt for p in probs}) == len(probs)
    assert {p.meta["kind"] for p in probs} >= {"gain", "loss", "mul", "div", "compare", "total", "multi"}
    for split in ("train", "validation"):
        with pytest.raises(ValueError, match="only a test split"):
            task.problems(split, 5)
    generated = {re.sub(r"\W+", " ", p.prompt.lower()).strip() for p in train_problems}
    assert not {re.sub(r"\W+", " ", p.prompt.lower()).strip() for p in probs} & generated


def test_test_only_families_are_refused_in_a_training_mixture():
    from training.train_dllm import DLLMTrainConfig

    for name in ("handwritten", "everyday_heldout"):
        with pytest.raises(ValueError, match="test-only"):
            DLLMTrainConfig(mixture=f"everyday:0.5,{name}:0.5")


def test_facts_drill_is_exact_and_in_range():
    task, rng = get_task("facts"), random.Random(3)
    ops = set()
    for _ in range(500):
        p = task.sample(rng, "train")
        assert task.verify(p.solution, p) and not wrong_facts(p.solution)
        for a, op, b, c in p.meta["facts"]:
            ops.add(op)
            assert 0 <= c <= 60 and 0 <= a <= 60 and 0 < b <= 60
            assert op not in "+-" or min(a, b) <= 12
    assert ops == set("+-x/")
    p = task.sample(rng, "test")
    assert not task.verify(p.solution.replace("=", "= 1", 1), p)


def test_every_v3_family_is_registered():
    assert {"everyday", "everyday_heldout", "handwritten", "facts"} <= set(TASKS)
