"""Tasks, training of the embedded dLLM, GRPO training and evaluation of unmasking policies."""
