"""unmasker: sample from masked diffusion LMs with pluggable unmasking policies.

Importing the package is cheap: submodules (and torch) load on first attribute access.
"""

import importlib

_EXPORTS = {
    "DLLM": "unmasker.dllm",
    "DLLMError": "unmasker.dllm",
    "load_dllm": "unmasker.loading",
    "SamplerConfig": "unmasker.sampler",
    "iter_unmask": "unmasker.sampler",
    "generate": "unmasker.sampler",
    "Step": "unmasker.trajectory",
    "Trajectory": "unmasker.trajectory",
    "POLICIES": "unmasker.policies",
    "build_policy": "unmasker.policies",
    "StepContext": "unmasker.policies",
    "UnmaskPolicy": "unmasker.policies",
    "LearnedPolicy": "unmasker.policies",
    "UnmaskPolicyScheduler": "unmasker.diffusers_scheduler",  # imports diffusers, only when asked for
}

DEFAULT_MODEL = "checkpoints/tiny-dllm"

__all__ = sorted(_EXPORTS) + ["DEFAULT_MODEL"]


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'unmasker' has no attribute {name!r}")
