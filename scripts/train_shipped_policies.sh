#!/usr/bin/env bash
# Train the shipped policies one after another (never two trainings at once on 2 cores).
# Each run resumes from its own train_state if interrupted; rerun this script to continue.
# STEPS / MINUTES bound each run (defaults sized for the 2-core CPU, see the cards).
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-60}
MINUTES=${MINUTES:-5.5}
# one GRPO round at L = 128 costs about 30 s on 2 cores (10x one at L = 48): its own time cap
MINUTES128=${MINUTES128:-45}
THREADS=${THREADS:-2}  # 1 when an evaluation shares the 2 cores
# CPU scale: 4 prompts x 8 rollouts per round, validation on 64 problems every 5 rounds
SCALE="--prompts_per_step 4 --eval_every 5 --eval_problems 64"
# v3-*: the paper's batch, 16 prompts x 8 rollouts, a 300-round cosine, validation on 256 problems every 20
# rounds; one session runs part of it (MINUTES_V3 per call), rerunning the script resumes
PAPER_SCALE="--prompts_per_step 16 --max_steps 300 --eval_every 20 --eval_problems 256 --seed 11 --max_minutes ${MINUTES_V3:-60}"
V3="--model checkpoints/tiny-dllm-v3 $PAPER_SCALE"
V4="--model checkpoints/tiny-dllm $PAPER_SCALE"  # v4, the default model since 2026-12-03
WARM="--distill_rounds 6 --distill_prompts 64"  # the oracle-distilled warm start: 6 DAgger rounds of 64 prompts
mkdir -p logs
run() {
  local name=$1; shift
  echo "== $name $(date +%T)"
  local minutes=$MINUTES
  case $name in full128*) minutes=$MINUTES128 ;; esac
  # the v2-era policies (no v3/v4 prefix) were trained on checkpoints/tiny-dllm-v2; a later --model wins
  python -m training.train_policy --output_dir "checkpoints/policies/$name" --model checkpoints/tiny-dllm-v2 \
    --max_steps "$STEPS" --max_minutes "$minutes" --threads "$THREADS" $SCALE "$@" > "logs/policy-$name.log" 2>&1
  python -c "import json;c=json.load(open('checkpoints/policies/$name/card.json'));print('$name', c['val_accuracy'], c['val_nfe'], c['wall_minutes'])"
}
# full128-*: the paper's full-diffusion setting (one block over a 128-token canvas, about six times the
# answers, where the confidence heuristics commit EOS first; see checkpoints/tiny-dllm-v2/card.json).
# full128c-*: the same, starting from the L = 48 full-diffusion policy (train that one first).
# full128-long-*: the RL-budget run, full128-a* continued for 210 more rounds at lr 3e-4 (train full128-a* first).
for name in ${ONLY:-v4-semiar-a1 v4-full128-ft-a1 v4-sudoku-a1 v4-sudoku-a3 v4-semiar-filter v4-sudoku-filter v3c-semiar-a1 v3-semiar-dist-a1 v3-sudoku-dist-a1 v3-sudoku-a1 v3-full128-ft-a1 v3-semiar-a1 v3-semiar-distonly-a1 full128-a1 full-a1 full128-es-a1 full128c-a1 full128-long-a1 semiar-a1 sudoku-a1 semiar-a3 full-a3 semiar-a0.3 full-a0.3 semiar-additive-a1 full-es-a1 semiar-b-a1 full128-a3 full128-a0.3 full128-es-a3 full128-es-a0.3 semiar-additive300-a1 full128-additive-a3}; do
  case $name in
    v4-semiar-filter) run "$name" --task word_problems --family filter --distill_only $V4 $WARM ;;  # Learn2PD's filter
    v4-sudoku-filter) run "$name" --task sudoku --full_diffusion true --family filter --distill_only $V4 $WARM ;;
    v4-full128-ft-a*) run "$name" --task word_problems --full_diffusion true --gen_length 128 \
                        --alpha "${name#v4-full128-ft-a}" --init_checkpoint checkpoints/policies/full128-long-a1 --lr 3e-4 \
                        $V4 ;;  # the v2 policy at the knee of the learned points on v4 validation, fine-tuned on v4
    v4-semiar-a*) run "$name" --task word_problems --alpha "${name#v4-semiar-a}" \
                    --init_bias -1 $V4 ;;  # v3-semiar-a*'s recipe on v4
    v4-sudoku-a*) run "$name" --task sudoku --full_diffusion true --alpha "${name#v4-sudoku-a}" \
                    --init_bias -1 $V4 ;;  # v3-sudoku-a*'s recipe on v4
    v3-semiar-distonly-a*) run "$name" --task word_problems --alpha "${name#v3-semiar-distonly-a}" \
                             --init_bias -1 $V3 $WARM --distill_only ;;  # the warm start alone
    v3-semiar-dist-a*) run "$name" --task word_problems --alpha "${name#v3-semiar-dist-a}" \
                         --init_bias -1 $V3 $WARM ;;  # oracle-distilled warm start
    v3-full128-dist-a*) run "$name" --task word_problems --full_diffusion true --gen_length 128 \
                          --alpha "${name#v3-full128-dist-a}" --init_bias -2 $V3 $WARM ;;  # not trained yet: one
                          # distillation round at L = 128 did not finish in 10 min on 1 core (not shipped, not in the list)
    v3-sudoku-dist-a*) run "$name" --task sudoku --full_diffusion true --alpha "${name#v3-sudoku-dist-a}" \
                         --init_bias -1 $V3 $WARM ;;
    v3-sudoku-a*) run "$name" --task sudoku --full_diffusion true --alpha "${name#v3-sudoku-a}" \
                    --init_bias -1 $V3 ;;
    v3-full128-ft-a*) run "$name" --task word_problems --full_diffusion true --gen_length 128 \
                        --alpha "${name#v3-full128-ft-a}" --init_checkpoint checkpoints/policies/full128-long-a1 --lr 3e-4 \
                        $V3 ;;  # from the v2 policy (model transfer), fine-tuned on v3
    v3-semiar-ft-a*) run "$name" --task word_problems --alpha "${name#v3-semiar-ft-a}" \
                       --init_checkpoint checkpoints/policies/v3-semiar-dist-a1 --lr 3e-4 $V3 ;;  # tried, not shipped (RESULTS.md, what was tried)
    v3c-semiar-a*) run "$name" --task word_problems --alpha "${name#v3c-semiar-a}" --init_bias -1 \
                     --model checkpoints/tiny-dllm-c $PAPER_SCALE ;;  # v3-semiar-a*'s recipe on the unseen model (section 5)
    v3-semiar-a*) run "$name" --task word_problems --alpha "${name#v3-semiar-a}" \
                    --init_bias -1 $V3 ;;  # the same run from the smart init
    full128-long-a*) run "$name" --task word_problems --full_diffusion true --gen_length 128 --alpha "${name#full128-long-a}" \
                       --init_checkpoint "checkpoints/policies/full128-a${name#full128-long-a}" --lr 3e-4 \
                       --max_steps 210 --max_minutes "${MINUTES_LONG:-90}" ;;  # RL budget: 99 + 210 rounds (argparse: last flag wins)
    full128c-a*) run "$name" --task word_problems --full_diffusion true --gen_length 128 --alpha "${name#full128c-a}" \
                   --init_checkpoint "checkpoints/policies/full-a${name#full128c-a}" ;;  # curriculum: from L = 48
    full128-additive-a*) run "$name" --task word_problems --full_diffusion true --gen_length 128 --reward additive \
                           --alpha "${name#full128-additive-a}" ;;  # before full128-a*, which would match it
    full128-es-a*) run "$name" --task word_problems --full_diffusion true --gen_length 128 --expert_steering true \
                     --alpha "${name#full128-es-a}" ;;
    full128-a*) run "$name" --task word_problems --full_diffusion true --gen_length 128 --alpha "${name#full128-a}" ;;
    full-es-a*) run "$name" --task word_problems --full_diffusion true --expert_steering true --alpha "${name#full-es-a}" ;;
    semiar-additive300-a*) run "$name" --task word_problems --reward additive --alpha "${name#semiar-additive300-a}" \
                             --init_bias -1 --max_steps 300 --max_minutes "${MINUTES_LONG:-90}" ;;  # does it collapse given 5x the rounds?
    semiar-additive-a*) run "$name" --task word_problems --reward additive --alpha "${name#semiar-additive-a}" --init_bias -1 ;;
    semiar-b-a*) run "$name" --task word_problems --model checkpoints/tiny-dllm-b --alpha "${name#semiar-b-a}" --init_bias -1 ;;
    semiar-a*) run "$name" --task word_problems --alpha "${name#semiar-a}" --init_bias -1 ;;
    full-a*) run "$name" --task word_problems --full_diffusion true --alpha "${name#full-a}" ;;
    sudoku-a*) run "$name" --task sudoku --full_diffusion true --alpha "${name#sudoku-a}" --init_bias -1 ;;
  esac
done
