"""Train the embedded tiny masked diffusion LM (a transformers BertForMaskedLM) from scratch.

Objective as LLaDA SFT: the prompt is never masked; the response, EOS-padded to the task's
generation length, is masked with ratio t ~ U(eps, 1) per sample, and the cross-entropy on masked
positions is weighted by 1/t and normalised by the generation length. Data is generated on the
fly from the task mixture (train split only), seeded by step, so a resumed run sees the same
stream. Each batch is padded to a canvas drawn from its task's `train_gen_lengths` (LLaDA's SFT
pads far past most answers, which is what makes confidence decoding commit EOS first).
`--ordered_share P` gives that share of each batch the mask of a semi-AR decoding state instead
(`ordered_mask`: a clean prefix, one partly masked block, the rest masked), so worked steps are
learned as computations rather than copies of their later repeats.
`--init_from FOLDER` starts from another embedded model's weights (rows of the word embedding
matched by token, new tokens initialised fresh): continued training, recorded in the card.
Runs as `python -m training.train_dllm` or `accelerate launch -m training.train_dllm`.
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import asdict, dataclass, field

import torch

from .schedules import warmup_cosine

CARD = "card.json"
STATE = "train_state"


@dataclass(frozen=True)
class DLLMTrainConfig:
    output_dir: str = field(default="checkpoints/tiny-dllm", metadata={"help": "where the model folder goes"})
    name: str = field(default="tiny-dllm", metadata={"help": "model name written to the card"})
    hidden_size: int = field(default=192, metadata={"help": "encoder width"})
    num_layers: int = field(default=5, metadata={"help": "encoder layers"})
    num_heads: int = field(default=4, metadata={"help": "attention heads"})
    intermediate_size: int = field(default=576, metadata={"help": "FFN width"})
    mixture: str = field(default="word_problems:0.5,word_problems_long:0.1,sudoku:0.2,sorting:0.05,arithmetic:0.15",
                         metadata={"help": "task:weight,... training mixture"})
    init_from: str = field(default="", metadata={"help": "start from this embedded model folder's weights "
                                                         "(same architecture; embeddings matched by token)"})
    batch_size: int = field(default=64, metadata={"help": "sequences per step"})
    lr: float = field(default=1.5e-3, metadata={"help": "peak AdamW learning rate"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    warmup_steps: int = field(default=200, metadata={"help": "linear warmup steps"})
    max_steps: int = field(default=5500, metadata={"help": "cosine schedule length (steps)"})
    stop_at_step: int = field(default=0, metadata={"help": "stop (and save the model) at this step, before the "
                                                          "max_steps schedule ends (0 = run to max_steps)"})
    max_minutes: float = field(default=70.0, metadata={"help": "stop after this wall time (minutes, this run)"})
    eps: float = field(default=1e-3, metadata={"help": "minimum mask ratio t ~ U(eps, 1)"})
    ordered_share: float = field(default=0.0, metadata={"help": "share of each batch given a semi-AR mask "
                                                                "(see ordered_mask; 0 = LLaDA's uniform mask only)"})
    ordered_block: int = field(default=8, metadata={"help": "block length of the semi-AR mask"})
    eval_every: int = field(default=500, metadata={"help": "validation every N steps"})
    eval_problems: int = field(default=100, metadata={"help": "validation problems per task"})
    eval_tasks: str = field(default="word_problems,sudoku", metadata={"help": "task,... validated every eval_every steps"})
    save_every: int = field(default=250, metadata={"help": "resumable checkpoint every N steps"})
    bf16: bool = field(default=False, metadata={"help": "bf16 autocast (slower than fp32 on our 2-core CPU)"})
    threads: int = field(default=0, metadata={"help": "torch CPU threads (0 = leave default)"})
    seed: int = field(default=0, metadata={"help": "seed for init and data"})
    resume: bool = field(default=True, metadata={"help": "continue from output_dir/train_state if present"})

    def __post_init__(self):
        for k in ("hidden_size", "num_layers", "num_heads", "batch_size", "max_steps", "eval_every", "save_every"):
            if getattr(self, k) < 1:
                raise ValueError(f"{k}={getattr(self, k)!r}: must be >= 1")
        if self.stop_at_step < 0:
            raise ValueError(f"stop_at_step={self.stop_at_step!r}: must be >= 0 (0 = run to max_steps)")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size={self.hidden_size} must be divisible by num_heads={self.num_heads}")
        if not (0 <= self.ordered_share <= 1) or isinstance(self.ordered_share, bool):
            raise ValueError(f"ordered_share={self.ordered_share!r}: must be in [0, 1]")
        if self.ordered_block < 1:
            raise ValueError(f"ordered_block={self.ordered_block!r}: must be >= 1")
        if not (0 < self.eps < 1):
            raise ValueError(f"eps={self.eps!r}: must be in (0, 1)")
        if not self.lr > 0:
            raise ValueError(f"lr={self.lr!r}: must be > 0")
        self.mixture_weights()
        from .tasks import TASKS
        for name in self.eval_tasks.split(","):
            if name not in TASKS:
                raise ValueError(f"eval_tasks: unknown task {name!r}; known: {sorted(TASKS)}")

    def mixture_weights(self) -> dict[str, float]:
        from .tasks import TASKS

        out = {}
        for part in self.mixture.split(","):
            name, _, w = part.partition(":")
            name = name.strip()
            if name not in TASKS:
                raise ValueError(f"mixture: unknown task {name!r}; known: {sorted(TASKS)}")
            if getattr(TASKS[name](), "heldout", False):
                raise ValueError(f"mixture: {name} is a test-only family (held-out or hand-written); "
                                 "it never goes into training")
            try:
                out[name] = float(w) if w else 1.0
            except ValueError:
                raise ValueError(f"mixture: weight {w!r} of {name} is not a number") from None
        if not out or sum(out.values()) <= 0:
            raise ValueError(f"mixture={self.mixture!r}: needs a positive weight")
        return out


def make_batch(tokenizer, task, problems, device, gen_length: int | None = None):
    """Prompt (left-padded) + response EOS-padded to gen_length (default task.gen_length).
    Returns ids, attention, response mask."""
    from unmasker.dllm import left_pad

    L = gen_length or task.gen_length
    prompts = tokenizer([p.prompt for p in problems], add_special_tokens=False)["input_ids"]
    responses = tokenizer([p.solution for p in problems], add_special_tokens=False)["input_ids"]
    ids, att = left_pad(prompts, tokenizer.pad_token_id)
    resp = torch.full((len(problems), L), tokenizer.eos_token_id, dtype=torch.long)
    for i, r in enumerate(responses):
        if len(r) > L:
            raise ValueError(f"{task.name}: response of {len(r)} tokens exceeds gen_length {L}")
        resp[i, :len(r)] = torch.tensor(r)
    x = torch.cat([ids, resp], 1).to(device)
    a = torch.cat([att, torch.ones_like(resp)], 1).to(device)
    is_resp = torch.zeros_like(x, dtype=torch.bool)
    is_resp[:, ids.shape[1]:] = True
    return x, a, is_resp


def ordered_mask(is_resp, content, t, block, generator):
    """The mask of a semi-AR decoding state: for each row a block start s (a multiple of `block`,
    uniform over the blocks up to the one holding the end of the row's content), response positions
    before s clean, the block [s, s + block) masked with ratio t, everything after it masked.

    Why: under LLaDA's uniform mask a worked step's result ("38 - 8 = 30") is almost always visible
    again later in the response (the next step's operand, the closing sentence), so the loss rarely
    asks the model to compute it: it learns to copy. Left-to-right decoding never shows the later
    copies. `content` is the number of non-padding response tokens per row."""
    B, T = is_resp.shape
    start = is_resp.int().argmax(-1)  # first response position (prompts are left-padded)
    rel = torch.arange(T, device=is_resp.device)[None, :] - start[:, None]
    n_blocks = content // block + 1
    s = (torch.rand(B, generator=generator).to(is_resp.device) * n_blocks).long().clamp(max=n_blocks - 1) * block
    in_block = (rel >= s[:, None]) & (rel < s[:, None] + block)
    coin = torch.rand(is_resp.shape, generator=generator).to(is_resp.device) < t[:, None]
    return is_resp & ((in_block & coin) | (rel >= s[:, None] + block))


def diffusion_loss(model, x, attention, is_resp, mask_id, eps, generator, *, ordered_share=0.0,
                   ordered_block=8, eos_id=None):
    """LLaDA SFT loss: mask response tokens with ratio t ~ U(eps, 1); CE on masked weighted by 1/t.

    With `ordered_share` > 0 that share of the rows gets `ordered_mask` instead (needs `eos_id`);
    such a row is weighted by 1 / (its masked share of the response), so both kinds of row weigh
    the same per masked token as the uniform objective on average."""
    B = x.shape[0]
    t = eps + (1 - eps) * torch.rand(B, generator=generator).to(x.device)
    masked = (torch.rand(x.shape, generator=generator).to(x.device) < t[:, None]) & is_resp
    weight = 1 / t
    if ordered_share > 0:
        if eos_id is None:
            raise ValueError("ordered_share needs eos_id (the response's padding token)")
        rows = torch.rand(B, generator=generator).to(x.device) < ordered_share
        content = (is_resp & (x != eos_id)).sum(-1)
        om = ordered_mask(is_resp, content, t, ordered_block, generator)
        masked = torch.where(rows[:, None], om, masked)
        share = (masked.sum(-1).float() / is_resp.sum(-1).clamp(min=1)).clamp(min=eps)
        weight = torch.where(rows, 1 / share, weight)
    noisy = torch.where(masked, torch.full_like(x, mask_id), x)
    pos = (attention.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=noisy, attention_mask=attention, position_ids=pos).logits
    ce = torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), x, reduction="none")
    per_token = ce * masked * weight[:, None]
    return per_token.sum() / is_resp.sum()


def evaluate_model(model, tokenizer, n: int, names=("word_problems", "sudoku")) -> dict[str, float]:
    """Validation accuracy with top-k confidence, one token per step, semi-AR (the one sampler)."""
    from unmasker.dllm import DLLM
    from unmasker.policies import TopKConfidence
    from unmasker.sampler import SamplerConfig

    from .evaluate import evaluate_point
    from .tasks import get_task

    was_training = model.training
    model.eval()
    dllm = DLLM(model=model, tokenizer=tokenizer, mask_id=tokenizer.mask_token_id,
                eos_ids=(tokenizer.eos_token_id,), pad_id=tokenizer.pad_token_id)
    out = {}
    for name in names:
        task = get_task(name)
        cfg = SamplerConfig(gen_length=task.gen_length, block_length=task.block_length)
        point = evaluate_point(dllm, task, task.problems("validation", n), TopKConfidence(k=1), cfg, seed=0)
        out[name] = point["accuracy"]
    model.train(was_training)
    return out


def train(cfg: DLLMTrainConfig) -> dict:
    from accelerate import Accelerator
    from tqdm import tqdm
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    from .tasks import get_task
    from .tokenizer import build_tokenizer

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    acc = Accelerator(mixed_precision="bf16" if cfg.bf16 else "no", cpu=not torch.cuda.is_available())
    os.makedirs(cfg.output_dir, exist_ok=True)
    state_dir = os.path.join(cfg.output_dir, STATE)
    meta_path = os.path.join(state_dir, "meta.json")
    tok_dir = os.path.join(cfg.output_dir, "tokenizer_src")
    resuming = cfg.resume and os.path.exists(meta_path)
    if resuming:
        with open(meta_path) as f:
            meta = json.load(f)
        if meta["config"] != _arch(cfg):
            raise ValueError(f"{state_dir} was written with another architecture/mixture: {meta['config']}; "
                             "use another output_dir or --resume false")
        tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    else:
        tokenizer = build_tokenizer(seed=cfg.seed)
        if acc.is_main_process:
            tokenizer.save_pretrained(tok_dir)
        meta = {"step": 0, "wall_seconds": 0.0, "config": _arch(cfg)}
    torch.manual_seed(cfg.seed)
    model = BertForMaskedLM(BertConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads, intermediate_size=cfg.intermediate_size,
        max_position_embeddings=256, type_vocab_size=1, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, pad_token_id=tokenizer.pad_token_id,
    ))
    if cfg.init_from and not resuming:
        _init_from(model, tokenizer, cfg.init_from)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.98), weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, cfg.warmup_steps, cfg.max_steps, floor=0.1))
    model, opt, sched = acc.prepare(model, opt, sched)
    if resuming:
        acc.load_state(state_dir)
    weights = cfg.mixture_weights()
    tasks = {n: get_task(n) for n in weights}
    log_path = os.path.join(cfg.output_dir, "train_log.jsonl")
    step, wall0, start = meta["step"], meta["wall_seconds"], time.time()
    bar = tqdm(total=cfg.max_steps, initial=step, disable=not acc.is_main_process, desc="dLLM")
    model.train()
    running = None
    last = min(cfg.stop_at_step or cfg.max_steps, cfg.max_steps)
    while step < last and (time.time() - start) / 60 < cfg.max_minutes:
        rng = random.Random(f"{cfg.seed}/{step}/{acc.process_index}")  # step-seeded: resume-exact
        name = rng.choices(list(weights), list(weights.values()))[0]
        task = tasks[name]
        problems = [task.augment(task.sample(rng, "train"), rng) for _ in range(cfg.batch_size)]
        canvas = rng.choice(task.train_gen_lengths or (task.gen_length,))
        x, a, r = make_batch(tokenizer, task, problems, acc.device, canvas)
        gen = torch.Generator().manual_seed(rng.randrange(2**31))
        with acc.autocast():
            loss = diffusion_loss(model, x, a, r, tokenizer.mask_token_id, cfg.eps, gen,
                                  ordered_share=cfg.ordered_share, ordered_block=cfg.ordered_block,
                                  eos_id=tokenizer.eos_token_id)
        acc.backward(loss)
        acc.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        step += 1
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        bar.update(1)
        bar.set_postfix(loss=f"{running:.3f}", task=name)
        record = None
        if step % cfg.eval_every == 0 or step == last:
            record = {"step": step, "loss": running, "wall_min": (wall0 + time.time() - start) / 60,
                      "val": evaluate_model(acc.unwrap_model(model), tokenizer, cfg.eval_problems,
                                            tuple(cfg.eval_tasks.split(",")))}
        elif step % 50 == 0:
            record = {"step": step, "loss": running, "wall_min": (wall0 + time.time() - start) / 60}
        if record and acc.is_main_process:
            with open(log_path, "a") as f:
                f.write(json.dumps(record) + "\n")
            if "val" in record:
                bar.write(json.dumps(record))
        if step % cfg.save_every == 0:
            _save_state(acc, state_dir, meta, step, wall0 + time.time() - start)
    bar.close()
    wall = wall0 + time.time() - start
    _save_state(acc, state_dir, meta, step, wall)
    if acc.is_main_process:
        model_to_save = acc.unwrap_model(model)
        model_to_save.save_pretrained(cfg.output_dir, safe_serialization=True)
        tokenizer.save_pretrained(cfg.output_dir)
        card = {"name": cfg.name, "architecture": "BertForMaskedLM (bidirectional, masked diffusion)",
                "parameters": sum(p.numel() for p in model_to_save.parameters()), "steps": step,
                "wall_minutes": round(wall / 60, 1), "seed": cfg.seed, "config": asdict(cfg),
                "train_command": "python -m training.train_dllm " + " ".join(
                    f"--{k} {v}" for k, v in asdict(cfg).items() if v != getattr(DLLMTrainConfig, k)),
                "hardware": f"{torch.get_num_threads()} CPU threads" if acc.device.type == "cpu" else str(acc.device)}
        old = {}
        if os.path.exists(os.path.join(cfg.output_dir, CARD)):
            with open(os.path.join(cfg.output_dir, CARD)) as f:
                old = json.load(f)
        card = {**old, **card}
        with open(os.path.join(cfg.output_dir, CARD), "w") as f:
            json.dump(card, f, indent=2)
    return {"step": step, "wall_seconds": wall}


def _init_from(model, tokenizer, folder: str) -> None:
    """Copy another embedded model's weights into `model` (same architecture). Word-embedding rows
    (tied to the output layer) and output biases are copied for tokens both vocabularies hold;
    tokens new to this vocabulary keep their fresh initialisation."""
    from transformers import AutoTokenizer, BertForMaskedLM

    src = BertForMaskedLM.from_pretrained(folder)
    src_tok = AutoTokenizer.from_pretrained(folder)
    mine, theirs = model.config, src.config
    for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "max_position_embeddings"):
        if getattr(mine, k) != getattr(theirs, k):
            raise ValueError(f"--init_from {folder}: {k} is {getattr(theirs, k)} there, {getattr(mine, k)} here; "
                             "pass the same architecture flags")
    vocab_keys = {"bert.embeddings.word_embeddings.weight", "cls.predictions.decoder.weight",
                  "cls.predictions.bias", "cls.predictions.decoder.bias"}
    state = {k: v for k, v in src.state_dict().items() if k not in vocab_keys}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or set(missing) - vocab_keys:
        raise ValueError(f"--init_from {folder}: weights do not match (missing {missing}, unexpected {unexpected})")
    shared = [(i, src_tok.convert_tokens_to_ids(t)) for t, i in tokenizer.get_vocab().items()
              if t in src_tok.get_vocab()]
    rows = torch.tensor([i for i, _ in shared])
    src_rows = torch.tensor([j for _, j in shared])
    new = torch.ones(len(tokenizer), dtype=torch.bool)
    new[rows] = False
    src_emb, src_bias = src.bert.embeddings.word_embeddings.weight, src.cls.predictions.bias
    with torch.no_grad():
        model.bert.embeddings.word_embeddings.weight[rows] = src_emb[src_rows]
        model.cls.predictions.bias[rows] = src_bias[src_rows]
        # A new token starts as a rare one: the mean embedding plus the fresh noise, and the lowest
        # output bias (a zero bias would pull probability from every trained prediction).
        emb = model.bert.embeddings.word_embeddings.weight
        emb[new] = src_emb.mean(0) + 0.1 * emb[new]
        model.cls.predictions.bias[new] = src_bias.min()


def _arch(cfg: DLLMTrainConfig) -> dict:
    keep = ("hidden_size", "num_layers", "num_heads", "intermediate_size", "mixture", "seed", "init_from")
    out = {k: getattr(cfg, k) for k in keep}
    if cfg.ordered_share:  # absent when 0, so runs started before the option resume as they were
        out.update(ordered_share=cfg.ordered_share, ordered_block=cfg.ordered_block)
    return out


def _save_state(acc, state_dir, meta, step, wall):
    acc.wait_for_everyone()
    acc.save_state(state_dir)
    if acc.is_main_process:
        meta = {**meta, "step": step, "wall_seconds": wall}
        tmp = os.path.join(state_dir, "meta.json.tmp")
        with open(tmp, "w") as f:
            json.dump(meta, f)
        os.replace(tmp, os.path.join(state_dir, "meta.json"))


def main(argv=None):
    from transformers import HfArgumentParser

    (cfg,) = HfArgumentParser(DLLMTrainConfig).parse_args_into_dataclasses(args=argv)
    print(json.dumps(train(cfg)))


if __name__ == "__main__":
    main()
