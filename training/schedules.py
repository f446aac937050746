"""Learning-rate schedule shared by the dLLM and policy trainers."""

import math


def warmup_cosine(step: int, warmup: int, total: int, floor: float = 0.0) -> float:
    """LR factor: linear warmup over `warmup` steps, then cosine from 1 down to `floor` at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
