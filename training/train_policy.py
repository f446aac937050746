"""Train the learned unmasking policy with GRPO, the dLLM frozen (paper section 3), optionally
from an oracle-distilled warm start (`--distill_rounds N`, issue 21; training/distill.py): N
DAgger rounds of supervised imitation of the oracle, each saved, then GRPO from that network
(`--distill_only` stops after the warm start; a later run without it continues into GRPO).

Each step: P prompts x G rollouts through the one sampling loop (policy Bernoulli actions,
no fallback, dLLM greedy), reward = correct x ((L - NFE + 1) / L)^alpha, advantage = reward -
group mean, clipped per-timestep likelihood ratio, mu optimisation passes, no KL. Optional expert
steering adds one Fast-dLLM rollout per group (paper 7). Resumable; JSONL metrics; best
checkpoint by validation reward. `python -m training.train_policy` or `accelerate launch -m ...`.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field

import torch

from . import grpo
from .schedules import warmup_cosine

# Resumable state: tensors in safetensors, everything else as JSON in the same file's header. A
# resume file is data, not code (no pickle). LEGACY_STATE_FILE (a torch.save pickle from older
# runs) is read with weights_only=True only, and replaced at the next save.
STATE_FILE = "train_state/state.safetensors"
LEGACY_STATE_FILE = "train_state/state.pt"
DISTILL_STATES_FILE = "train_state/distill_states.safetensors"  # the warm start's aggregated labelled states


@dataclass(frozen=True)
class PolicyTrainConfig:
    output_dir: str = field(default="runs/policies/semiar-a1", metadata={"help": "policy folder to write (a shipped policy is retrained by naming its folder, as scripts/train_shipped_policies.sh does)"})
    model: str = field(default="checkpoints/tiny-dllm", metadata={"help": "frozen dLLM (folder or hub id)"})
    task: str = field(default="word_problems", metadata={"help": "training task family"})
    gen_length: int = field(default=0, metadata={"help": "generation length L (0 = the task's)"})
    block_length: int = field(default=0, metadata={"help": "block length (0 = the task's semi-AR block)"})
    full_diffusion: bool = field(default=False, metadata={"help": "one block of length L"})
    alpha: float = field(default=1.0, metadata={"help": "compute exponent alpha of the reward (>= 0)"})
    reward: str = field(default="multiplicative", metadata={"help": "multiplicative | additive (ablation)"})
    group_size: int = field(default=8, metadata={"help": "rollouts per prompt G"})
    prompts_per_step: int = field(default=8, metadata={"help": "prompts per rollout round (per process)"})
    epsilon: float = field(default=0.5, metadata={"help": "clip range of the likelihood ratio"})
    mu: int = field(default=2, metadata={"help": "optimisation passes per rollout batch"})
    lr: float = field(default=1e-3, metadata={"help": "peak AdamW learning rate"})
    weight_decay: float = field(default=0.1, metadata={"help": "AdamW weight decay"})
    max_grad_norm: float = field(default=0.2, metadata={"help": "gradient clipping norm"})
    warmup_steps: int = field(default=10, metadata={"help": "linear warmup (optimiser steps)"})
    max_steps: int = field(default=80, metadata={"help": "rollout rounds (cosine schedule length)"})
    max_minutes: float = field(default=60.0, metadata={"help": "stop after this wall time (this run)"})
    train_temperature: float = field(default=1.0, metadata={"help": "policy temperature during training"})
    eval_temperature: float = field(default=0.0, metadata={"help": "policy temperature for validation (0 = paper: 0.5 semi-AR, 1 full)"})
    eval_every: int = field(default=10, metadata={"help": "validate every N rounds"})
    eval_problems: int = field(default=128, metadata={"help": "validation problems"})
    expert_steering: bool = field(default=False, metadata={"help": "add one Fast-dLLM rollout per group"})
    expert_threshold: float = field(default=0.9, metadata={"help": "Fast-dLLM threshold of the expert"})
    expert_block_length: int = field(default=0, metadata={"help": "expert block length (0 = task's semi-AR block)"})
    init_checkpoint: str = field(default="", metadata={"help": "start from this policy instead of the smart init"})
    init_bias: float = field(default=-2.0, metadata={"help": "smart-init output bias (paper -2: sigmoid = 0.12 per position "
                                                            "and step; raise it for short blocks so rollouts can finish)"})
    family: str = field(default="paper", metadata={
        "help": "network of a new policy: paper (the 331,265-parameter transformer) or filter (Learn2PD's block "
                "MLP, unmasker/policies/filter.py; usually with --distill_rounds N --distill_only)"})
    filter_hidden: int = field(default=96, metadata={"help": "hidden width of the filter's MLP (--family filter)"})
    distill_rounds: int = field(default=0, metadata={
        "help": "oracle-distillation warm start: DAgger rounds before GRPO (0 = none). Each round labels the "
                "states of rollouts (the oracle's in round 1, the policy's after) with the oracle's decisions, "
                "adds them to the aggregate and fits a masked BCE; progress goes to metrics.jsonl; each round is "
                "saved, so an interrupted run resumes at the next round"})
    distill_only: bool = field(default=False, metadata={"help": "stop after the warm start (no GRPO); rerun "
                                                               "without it to continue into GRPO"})
    distill_prompts: int = field(default=32, metadata={"help": "prompts rolled out and labelled per distillation round"})
    distill_steps: int = field(default=200, metadata={"help": "supervised AdamW steps per round on the aggregate"})
    distill_batch: int = field(default=256, metadata={"help": "states per supervised step"})
    distill_lr: float = field(default=1e-3, metadata={"help": "AdamW learning rate of the warm start (constant)"})
    save_every: int = field(default=5, metadata={"help": "resumable state every N rounds"})
    threads: int = field(default=0, metadata={"help": "torch CPU threads (0 = default)"})
    seed: int = field(default=123, metadata={"help": "seed (init, prompts, rollouts)"})
    resume: bool = field(default=True, metadata={"help": "continue from output_dir/train_state if present"})

    def __post_init__(self):
        from unmasker.policies import ConfidenceThreshold  # validates the threshold

        from .tasks import TASKS

        if self.task not in TASKS:
            raise ValueError(f"task={self.task!r}: known tasks are {sorted(TASKS)}")
        if self.reward not in grpo.REWARDS:
            raise ValueError(f"reward={self.reward!r}: expected one of {sorted(grpo.REWARDS)}")
        if not (self.alpha >= 0 and math.isfinite(self.alpha)):
            raise ValueError(f"alpha={self.alpha!r}: must be a finite number >= 0")
        if self.family not in ("paper", "filter"):
            raise ValueError(f"family={self.family!r}: expected 'paper' or 'filter'")
        for k in ("group_size", "prompts_per_step", "mu", "max_steps", "eval_every", "eval_problems", "save_every",
                  "distill_prompts", "distill_steps", "distill_batch", "filter_hidden"):
            if not isinstance(getattr(self, k), int) or getattr(self, k) < 1:
                raise ValueError(f"{k}={getattr(self, k)!r}: must be an integer >= 1")
        if not isinstance(self.distill_rounds, int) or self.distill_rounds < 0:
            raise ValueError(f"distill_rounds={self.distill_rounds!r}: must be an integer >= 0")
        if self.distill_only and not self.distill_rounds:
            raise ValueError("distill_only=True needs distill_rounds >= 1")
        if not (self.distill_lr > 0 and math.isfinite(self.distill_lr)):
            raise ValueError(f"distill_lr={self.distill_lr!r}: must be a finite number > 0")
        if self.group_size < 2:
            raise ValueError(f"group_size={self.group_size}: GRPO needs at least 2 rollouts per prompt")
        if not (0 < self.epsilon < 1):
            raise ValueError(f"epsilon={self.epsilon!r}: must be in (0, 1)")
        if self.lr <= 0 or self.train_temperature <= 0 or self.eval_temperature < 0:
            raise ValueError("lr and train_temperature must be > 0, eval_temperature >= 0")
        ConfidenceThreshold(self.expert_threshold)
        self.sampler_config()

    def sampler_config(self):
        from unmasker.sampler import SamplerConfig

        from .tasks import get_task

        task = get_task(self.task)
        L = self.gen_length or task.gen_length
        block = L if self.full_diffusion else (self.block_length or task.block_length)
        return SamplerConfig(gen_length=L, block_length=block)

    def eval_policy_temperature(self) -> float:
        if self.eval_temperature:
            return self.eval_temperature
        if self.family == "filter":  # its logits are fit at temperature 1 (BCE); it runs by its decision threshold
            return 1.0
        cfg = self.sampler_config()
        return 1.0 if cfg.block_length == cfg.gen_length else 0.5


def _prompts(task, rng, n, split="train"):
    return [task.sample(rng, split) for _ in range(n)]


def validate(dllm, net, task, problems, cfg: PolicyTrainConfig, batch=64, temperature: float | None = None) -> dict:
    """Accuracy, mean NFE and mean reward on validation problems, test-time settings (fallback;
    policy temperature `temperature`, default the config's evaluation temperature)."""
    from unmasker.policies import LearnedPolicy
    from unmasker.sampler import generate

    scfg = cfg.sampler_config()
    temperature = cfg.eval_policy_temperature() if temperature is None else temperature
    policy = LearnedPolicy(net=net, temperature=temperature, fallback=True,
                           decision_threshold=getattr(net, "decision_threshold", 0.0))  # a filter's rule, else draws
    correct, nfe = [], []
    for i in range(0, len(problems), batch):
        chunk = problems[i:i + batch]
        traj = generate(dllm, policy, [p.prompt for p in chunk], scfg, seed=0)
        correct += task.reward(traj.texts, chunk)
        nfe += traj.nfe.tolist()
    c, n = torch.tensor(correct), torch.tensor(nfe)
    reward = grpo.REWARDS[cfg.reward](c, n, scfg.gen_length, cfg.alpha)
    return {"accuracy": c.mean().item(), "nfe": n.float().mean().item(), "reward": reward.mean().item()}


def train(cfg: PolicyTrainConfig) -> dict:
    from accelerate import Accelerator
    from tqdm import tqdm

    from unmasker.loading import load_dllm
    from unmasker.policies import ConfidenceThreshold, LearnedPolicy
    from unmasker.policies.learned import ConfidencePolicyNet, load_policy_net

    from .tasks import get_task

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    acc = Accelerator(cpu=not torch.cuda.is_available())
    task = get_task(cfg.task)
    dllm = load_dllm(cfg.model, device=acc.device, generation_prefix=task.generation_prefix)
    scfg = cfg.sampler_config()
    L = scfg.gen_length
    torch.manual_seed(cfg.seed)
    if cfg.init_checkpoint:
        net = load_policy_net(cfg.init_checkpoint)
    elif cfg.family == "filter":
        from unmasker.policies.filter import FilterNet
        net = FilterNet(block_length=scfg.block_length, hidden=cfg.filter_hidden, init_bias=cfg.init_bias)
    else:
        net = ConfidencePolicyNet(init_bias=cfg.init_bias)
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=cfg.weight_decay)
    total_opt_steps = cfg.max_steps * cfg.mu
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, cfg.warmup_steps, total_opt_steps))
    net, opt, sched = acc.prepare(net, opt, sched)
    raw = acc.unwrap_model(net)

    os.makedirs(os.path.join(cfg.output_dir, "train_state"), exist_ok=True)
    state_path = os.path.join(cfg.output_dir, STATE_FILE)
    log_path = os.path.join(cfg.output_dir, "metrics.jsonl")
    state = {"step": 0, "wall": 0.0, "best": -float("inf"), "best_eval": None, "rollouts": 0, "rollout_seconds": 0.0,
             "phase": "distill" if cfg.distill_rounds else "grpo", "distill_round": 0, "distill_states": 0}
    saved, saved_path = None, None
    if cfg.resume:
        saved, saved_path = _load_resume_state(cfg.output_dir)
    if saved is not None:
        if _resume_key(saved["config"]) != _resume_key(asdict(cfg)):
            raise ValueError(f"{saved_path} was written with a different configuration; use another --output_dir "
                             "or --resume false")
        raw.load_state_dict(saved["net"])
        state = {"phase": "grpo", "distill_round": 0, "distill_states": 0, **saved["state"]}  # older runs: GRPO only
        if state["phase"] == "grpo":  # else the saved optimiser is the warm start's (see _distill)
            opt.load_state_dict(saved["opt"])
            sched.load_state_dict(saved["sched"])
    val_problems = task.problems("validation", cfg.eval_problems)
    start = time.time()
    if state["phase"] == "distill":
        if not _distill(cfg, acc, net, dllm, task, state, saved, val_problems, start):  # out of time; rounds saved
            return {"step": 0, "distill_round": state["distill_round"], "best_eval": state["best_eval"]}
        if acc.is_main_process:  # the warm start is done: GRPO begins from it with a fresh optimiser
            _save_state(state_path, raw, opt, sched, cfg, state, time.time() - start)
    if cfg.distill_only:
        if acc.is_main_process:
            _finish_card(cfg.output_dir, state, time.time() - start)
        return {"step": state["step"], "distill_round": state["distill_round"], "best_eval": state["best_eval"]}
    expert = ConfidenceThreshold(cfg.expert_threshold) if cfg.expert_steering else None
    expert_cfg = None
    if expert is not None:
        from unmasker.sampler import SamplerConfig

        expert_cfg = SamplerConfig(gen_length=L, block_length=cfg.expert_block_length or task.block_length)
    G, P = cfg.group_size, cfg.prompts_per_step
    bar = tqdm(total=cfg.max_steps, initial=state["step"], disable=not acc.is_main_process, desc="GRPO")
    while state["step"] < cfg.max_steps and (time.time() - start) / 60 < cfg.max_minutes:
        step = state["step"]
        rng = random.Random(f"{cfg.seed}/{step}/{acc.process_index}")
        problems = _prompts(task, rng, P)
        t0 = time.time()
        raw.eval()
        policy = LearnedPolicy(net=raw, temperature=cfg.train_temperature, fallback=False)
        prompts = [p.prompt for p in problems for _ in range(G)]
        batch = grpo.rollout(dllm, policy, prompts, scfg, seed=rng.randrange(2**31))
        correct = torch.tensor(task.reward(batch.texts, [p for p in problems for _ in range(G)]))
        reward = grpo.REWARDS[cfg.reward](correct, batch.nfe, L, cfg.alpha).view(P, G)
        n_expert = 0
        if expert is not None:
            eb = grpo.rollout(dllm, expert, [p.prompt for p in problems], expert_cfg, seed=0, score_all_masked=True)
            e_correct = torch.tensor(task.reward(eb.texts, problems))
            e_reward = grpo.REWARDS[cfg.reward](e_correct, eb.nfe, L, cfg.alpha).view(P, 1)
            batch, n_expert = grpo.concat_rollouts(batch, eb), 1
            adv_grid = torch.cat([reward, e_reward], 1)
            adv_grid = adv_grid - adv_grid.mean(1, keepdim=True)  # mean over G + E (paper 7)
            advantages = torch.cat([adv_grid[:, :G].reshape(-1), adv_grid[:, G:].reshape(-1)])
        else:
            advantages = grpo.group_advantages(reward.view(-1), G)
        state["rollout_seconds"] += time.time() - t0
        state["rollouts"] += P * G
        raw.train()
        is_expert = torch.zeros(advantages.numel(), dtype=torch.bool)
        is_expert[P * G:] = True
        with torch.no_grad():
            logp_old, entropy = grpo.sequence_log_probs(raw, batch, cfg.train_temperature)
            logp_old = _steer(logp_old.cpu(), is_expert, G, n_expert)
        keep = advantages.abs() > 1e-6  # all-zero groups carry no signal (paper 3.1)
        losses = []
        if keep.any():
            for _ in range(cfg.mu):
                logp_new, _ = grpo.sequence_log_probs(net, batch, cfg.train_temperature)
                logp_new = _steer(logp_new.cpu(), is_expert, G, n_expert)
                loss = grpo.clipped_surrogate_loss(logp_new, logp_old, advantages, batch.active, cfg.epsilon)
                acc.backward(loss)
                acc.clip_grad_norm_(net.parameters(), cfg.max_grad_norm)
                opt.step()
                sched.step()
                opt.zero_grad()
                losses.append(loss.item())
        state["step"] = step = step + 1
        pol_nfe = batch.nfe[:P * G].float()
        record = {"step": step, "reward": reward.mean().item(), "accuracy": correct.float().mean().item(),
                  "nfe": pol_nfe.mean().item(), "still_masked": (batch.tokens[:P * G] == dllm.mask_id).sum(-1).float().mean().item(),
                  "entropy": entropy, "loss": sum(losses) / len(losses) if losses else None,
                  "skipped": not keep.any().item(), "lr": sched.get_last_lr()[0],
                  "wall_min": (state["wall"] + time.time() - start) / 60}
        if expert is not None:
            record["expert_accuracy"] = e_correct.float().mean().item()
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            raw.eval()
            record["val"] = validate(dllm, raw, task, val_problems, cfg)
            if acc.is_main_process and record["val"]["reward"] > state["best"]:
                state["best"], state["best_eval"] = record["val"]["reward"], {**record["val"], "step": step}
                _save_policy(raw, cfg, state, time.time() - start)
        if acc.is_main_process:
            with open(log_path, "a") as f:
                f.write(json.dumps(record) + "\n")
        bar.update(1)
        bar.set_postfix(R=f"{record['reward']:.3f}", acc=f"{record['accuracy']:.2f}", nfe=f"{record['nfe']:.1f}")
        if "val" in record:
            bar.write(json.dumps({"step": step, "val": record["val"]}))
        if step % cfg.save_every == 0 and acc.is_main_process:
            _save_state(state_path, raw, opt, sched, cfg, state, time.time() - start)
    bar.close()
    if acc.is_main_process:
        _save_state(state_path, raw, opt, sched, cfg, state, time.time() - start)
        if state["best_eval"] is None:  # stopped before any validation: validate and ship what we have
            raw.eval()
            state["best_eval"] = {**validate(dllm, raw, task, val_problems, cfg), "step": state["step"]}
            _save_policy(raw, cfg, state, time.time() - start)
        _finish_card(cfg.output_dir, state, time.time() - start)
    return {"step": state["step"], "distill_round": state["distill_round"], "best_eval": state["best_eval"]}


def _distill(cfg, acc, net, dllm, task, state, saved, val_problems, start) -> bool:
    """The oracle-distilled warm start (training/distill.py), from round `state["distill_round"]`
    on: per round, label the states of one rollout with the oracle's decisions, aggregate, fit,
    log, save (the network, this stage's AdamW, the aggregate). Ends with the distilled network
    validated and saved as the best so far, `state["phase"]` = "grpo". False when the time budget
    ran out first (everything up to the last finished round is saved)."""
    from unmasker.policies import LearnedPolicy

    from . import distill
    from .oracle import Oracle

    raw = acc.unwrap_model(net)
    scfg = cfg.sampler_config()
    opt = acc.prepare(torch.optim.AdamW(raw.parameters(), lr=cfg.distill_lr, betas=(0.9, 0.99),
                                        weight_decay=cfg.weight_decay))
    if saved is not None and saved["state"].get("phase") == "distill":
        opt.load_state_dict(saved["opt"])
    data_path = os.path.join(cfg.output_dir, DISTILL_STATES_FILE)
    data = _load_states(data_path, state["distill_states"])
    log_path = os.path.join(cfg.output_dir, "metrics.jsonl")
    while state["distill_round"] < cfg.distill_rounds:
        if (time.time() - start) / 60 >= cfg.max_minutes:
            return False
        r = state["distill_round"]
        rng = random.Random(f"{cfg.seed}/distill/{r}/{acc.process_index}")
        prompts = [p.prompt for p in _prompts(task, rng, cfg.distill_prompts)]
        raw.eval()
        tap, oracle = Oracle().prepare(dllm, prompts, scfg, seed=0)  # the one-token-per-step reference decode
        if r == 0:  # DAgger's first round: the expert's own states
            roll_dllm, policy = tap, oracle
        else:  # then the states the current policy visits (sampled at the training temperature)
            roll_dllm, policy = dllm, LearnedPolicy(net=raw, temperature=cfg.train_temperature, fallback=True)
        new, batch = distill.collect(roll_dllm, policy, prompts, scfg, oracle.reference.tokens,
                                     seed=rng.randrange(2**31))
        before = distill.imitation_stats(raw, new, cfg.train_temperature)  # on states it has not been fit to
        data = new if data is None else data.cat(new)
        raw.train()
        losses = distill.fit(net, opt, data, cfg.distill_steps, cfg.distill_batch,
                             torch.Generator().manual_seed(rng.randrange(2**31)), cfg.train_temperature,
                             cfg.max_grad_norm, acc.backward, acc.clip_grad_norm_)
        raw.eval()
        after = distill.imitation_stats(raw, data, cfg.train_temperature)
        greedy = validate(dllm, raw, task, val_problems, cfg, temperature=distill.GREEDY_TEMPERATURE)
        state["distill_round"], state["distill_states"] = r + 1, len(data)
        record = {"stage": "distill", "round": r + 1, "rollout_policy": "oracle" if r == 0 else "policy",
                  "rollout_nfe": batch.nfe.float().mean().item(), "reference_nfe": oracle.reference.nfe.float().mean().item(),
                  "states_new": len(new), "states": len(data), "bce_new_states_before": before["bce"],
                  "agreement_new_states_before": before["agreement"], "bce": after["bce"],
                  "agreement": after["agreement"], "oracle_commit_rate": after["oracle_commit_rate"],
                  "loss_first": losses[0], "loss_last": losses[-1], "greedy_val": greedy,
                  "wall_min": (state["wall"] + time.time() - start) / 60}
        if state["distill_round"] == cfg.distill_rounds:
            record["val_distilled"] = validate(dllm, raw, task, val_problems, cfg)
            state["best"], state["best_eval"] = record["val_distilled"]["reward"], {**record["val_distilled"], "step": 0}
            state["phase"] = "grpo"
        if acc.is_main_process:
            with open(log_path, "a") as f:
                f.write(json.dumps(record) + "\n")
            print(json.dumps({k: v for k, v in record.items() if k not in ("stage",)}), flush=True)
            _save_states(data_path, data)  # before the state that counts it (a kill in between is harmless)
            if state["phase"] == "grpo":
                _save_policy(raw, cfg, state, time.time() - start)
            else:
                _save_state(os.path.join(cfg.output_dir, STATE_FILE), raw, opt, _NO_SCHEDULE, cfg, state,
                            time.time() - start)
    return True


class _NoSchedule:
    """The warm start's learning rate is constant: nothing to save for its schedule."""

    @staticmethod
    def state_dict():
        return {}


_NO_SCHEDULE = _NoSchedule()


def _save_states(path: str, states) -> None:
    from safetensors.torch import save_file

    tmp = path + ".tmp"
    save_file(states.tensors(), tmp)
    os.replace(tmp, path)


def _load_states(path: str, n: int):
    """The first `n` aggregated states of an interrupted warm start (None when n = 0)."""
    from safetensors.torch import load_file

    from .distill import States

    if not n:
        return None
    if not os.path.exists(path):
        raise ValueError(f"{path} is missing, but the saved state counts {n} distillation states; "
                         "use another --output_dir or --resume false")
    data = States.from_tensors(load_file(path))
    if len(data) < n:
        raise ValueError(f"{path} holds {len(data)} states, the saved state counts {n}")
    return data.take(slice(0, n))


def _finish_card(output_dir, state, run_seconds):
    """The card is written at the best checkpoint; add what the whole run cost."""
    path = os.path.join(output_dir, "card.json")
    with open(path) as f:
        card = json.load(f)
    card.update({"total_steps": state["step"], "total_wall_minutes": round((state["wall"] + run_seconds) / 60, 2),
                 "total_rollouts": state["rollouts"],
                 "rollouts_per_second": round(state["rollouts"] / max(state["rollout_seconds"], 1e-9), 1)})
    with open(path, "w") as f:
        json.dump(card, f, indent=2)


def _resume_key(config: dict) -> dict:
    """The fields that must match between a run and its resumption: all but budgets, threads,
    distill_only (a warm start may continue into GRPO) and output_dir (a run folder may be moved
    or copied). A field an older run did not save counts as its default."""
    full = {**asdict(PolicyTrainConfig()), **config}
    exempt = ("max_minutes", "max_steps", "resume", "threads", "distill_only", "output_dir")
    return {k: v for k, v in full.items() if k not in exempt}


def _steer(logp, is_expert, G, n_expert):
    """Expert rollouts are scored under the mixture policy; others unchanged."""
    if not n_expert:
        return logp
    out = logp.clone()
    out[:, is_expert] = grpo.mixture_log_prob(logp[:, is_expert], G, n_expert)
    return out


def _save_state(path, raw, opt, sched, cfg, state, run_seconds):
    save_state(path, {"net": raw.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                      "config": asdict(cfg), "state": {**state, "wall": state["wall"] + run_seconds}})
    legacy = os.path.join(os.path.dirname(os.path.dirname(path)), LEGACY_STATE_FILE)
    if os.path.exists(legacy):
        os.remove(legacy)  # superseded by the data-only file


def _load_resume_state(output_dir: str):
    """(payload, path) of the resumable state in `output_dir`, or (None, None)."""
    import pickle

    path, legacy = os.path.join(output_dir, STATE_FILE), os.path.join(output_dir, LEGACY_STATE_FILE)
    if os.path.exists(path):
        return load_state(path), path
    if os.path.exists(legacy):
        try:  # tensors and plain containers only: an object that would run code is refused, not built
            return torch.load(legacy, weights_only=True), legacy
        except (pickle.UnpicklingError, RuntimeError) as err:
            raise ValueError(f"{legacy} holds more than tensors and plain data; not loaded ({err}). "
                             "Delete it or pass --resume false") from err
    return None, None


def save_state(path: str, payload: dict) -> None:
    """Write {"net": state_dict, "opt": optimizer state_dict, "sched", "config", "state"} as one
    safetensors file: the network's and the optimiser's tensors as tensors ("net.<name>",
    "opt.<param>.<key>"), the rest (param groups, scheduler, config, counters) as JSON in the header."""
    from safetensors.torch import save_file

    tensors = {f"net.{k}": v for k, v in payload["net"].items()}
    opt_scalars = {}
    for pid, slots in payload["opt"]["state"].items():
        for key, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"opt.{pid}.{key}"] = value
            else:
                opt_scalars[f"{pid}.{key}"] = value
    header = {"param_groups": payload["opt"]["param_groups"], "opt_scalars": opt_scalars,
              "sched": payload["sched"], "config": payload["config"], "state": payload["state"]}
    tmp = path + ".tmp"
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp,
              metadata={"format": "pt", "train_state": json.dumps(header)})
    os.replace(tmp, path)  # atomic: a kill never leaves a half-written state


def load_state(path: str) -> dict:
    """Inverse of `save_state` (tensors on the CPU)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(path, framework="pt") as f:
        header = json.loads(f.metadata()["train_state"])
    tensors = load_file(path)
    net = {k[len("net."):]: v for k, v in tensors.items() if k.startswith("net.")}
    opt_state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("opt."):
            pid, key = name[len("opt."):].split(".", 1)
            opt_state.setdefault(int(pid), {})[key] = value
    for name, value in header["opt_scalars"].items():
        pid, key = name.split(".", 1)
        opt_state.setdefault(int(pid), {})[key] = value
    # JSON turns tuples into lists; Adam's betas are a tuple
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in header["param_groups"]]
    return {"net": net, "opt": {"state": opt_state, "param_groups": groups}, "sched": header["sched"],
            "config": header["config"], "state": header["state"]}


def _save_policy(raw, cfg, state, run_seconds):
    raw.save_pretrained(cfg.output_dir)
    scfg = cfg.sampler_config()
    wall = state["wall"] + run_seconds
    card = {
        "name": os.path.basename(os.path.normpath(cfg.output_dir)), "task": cfg.task, "model": cfg.model,
        "gen_length": scfg.gen_length, "block_length": scfg.block_length, "alpha": cfg.alpha,
        "reward": cfg.reward, "expert_steering": cfg.expert_steering,
        "temperature": cfg.eval_policy_temperature(), "train_command": train_command(cfg),
        "wall_minutes": round(wall / 60, 2), "steps": state["step"], "rollouts": state["rollouts"],  # at the best step
        "rollouts_per_second": round(state["rollouts"] / max(state["rollout_seconds"], 1e-9), 1),
        "val_accuracy": state["best_eval"]["accuracy"], "val_nfe": state["best_eval"]["nfe"],
        "val_reward": state["best_eval"]["reward"], "best_step": state["best_eval"]["step"],
        "parameters": sum(p.numel() for p in raw.parameters()), "family": getattr(raw, "family", "paper"),
        **({"decision_threshold": raw.decision_threshold} if hasattr(raw, "decision_threshold") else {}),
        "config": asdict(cfg),
    }
    with open(os.path.join(cfg.output_dir, "card.json"), "w") as f:
        json.dump(card, f, indent=2)


def train_command(cfg: PolicyTrainConfig) -> str:
    defaults = PolicyTrainConfig()
    args = [f"--{k} {v}" for k, v in asdict(cfg).items()
            if v != getattr(defaults, k) and k not in ("resume", "threads")]
    if "--output_dir" not in " ".join(args):
        args.insert(0, f"--output_dir {cfg.output_dir}")
    return "python -m training.train_policy " + " ".join(args)


def main(argv=None):
    from transformers import HfArgumentParser

    (cfg,) = HfArgumentParser(PolicyTrainConfig).parse_args_into_dataclasses(args=argv)
    print(json.dumps(train(cfg)))


if __name__ == "__main__":
    main()
