"""The embedded model's word/number-level tokenizer, built with `tokenizers` and saved as a
`PreTrainedTokenizerFast` that `AutoTokenizer.from_pretrained(folder)` loads offline."""

from __future__ import annotations

import random

from .tasks import TASKS, get_task

SPECIALS = {"pad_token": "[PAD]", "unk_token": "[UNK]", "mask_token": "[MASK]", "eos_token": "[EOS]"}


def build_tokenizer(samples_per_task: int = 3000, seed: int = 0):
    """Vocabulary: the special tokens, the numbers 0-99, and every word the task generators emit in
    their training splits (a family's `words()` inventory where it has one, so rare words are not
    left to sampling). Held-out wordings add no word: a family with `heldout` set is skipped."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = set(str(n) for n in range(100))
    rng = random.Random(seed)
    pre = pre_tokenizers.Whitespace()
    for name in TASKS:
        task = get_task(name)
        if getattr(task, "heldout", False):
            continue
        for w in getattr(task, "words", lambda: ())():
            words.update(t for t, _ in pre.pre_tokenize_str(w))
        for _ in range(samples_per_task):
            p = task.sample(rng, "train")
            for text in (p.prompt, p.solution):
                words.update(w for w, _ in pre.pre_tokenize_str(text.lower()))
    vocab = {tok: i for i, tok in enumerate(SPECIALS.values())}
    for w in sorted(words):
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=SPECIALS["unk_token"]))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre
    return PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIALS)
