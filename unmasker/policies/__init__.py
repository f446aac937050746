"""The policy registry: an explicit name -> class table, and string-parameter parsing for CLIs/UIs."""

from __future__ import annotations

import dataclasses
import typing

from .base import StepContext, UnmaskPolicy
from .eos_rejection import EOSEarlyRejection, EOSRejectionASS
from .heuristics import ConfidenceThreshold, EBSampler, Entropy, Factor, Margin, RandomOrder, TopKConfidence
from .learned import LearnedPolicy

POLICIES: dict[str, type] = {
    "random": RandomOrder,
    "top_k_confidence": TopKConfidence,
    "confidence_threshold": ConfidenceThreshold,
    "factor": Factor,
    "margin": Margin,
    "entropy": Entropy,
    "eb_sampler": EBSampler,
    "learned": LearnedPolicy,
    "eos_rejection": EOSEarlyRejection,
    "eos_rejection_ass": EOSRejectionASS,
}


def policy_params(name: str) -> list[dataclasses.Field]:
    """The user-settable parameters of a registered policy."""
    cls = _lookup(name)
    return [f for f in dataclasses.fields(cls) if f.name != "net"]


def describe_policies() -> str:
    lines = []
    for name, cls in POLICIES.items():
        doc = " ".join((cls.__doc__ or "").split())
        lines.append(f"{name}: {doc}")
        for f in policy_params(name):
            default = f.default if f.default is not dataclasses.MISSING else "required"
            lines.append(f"    {f.name} = {default!r}    {f.metadata.get('help', '')}")
    return "\n".join(lines)


def build_policy(name: str, **params) -> UnmaskPolicy:
    """Construct a registered policy. String values (from a CLI or UI) are converted to the field's type."""
    cls = _lookup(name)
    fields = {f.name: f for f in policy_params(name)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in params.items():
        if key not in fields:
            raise ValueError(f"policy {name!r} has no parameter {key!r}; it takes {sorted(fields)}")
        kwargs[key] = _convert(key, value, hints[key]) if isinstance(value, str) else value
    return cls(**kwargs)


def parse_params(pairs: list[str] | None) -> dict[str, str]:
    """['threshold=0.9', ...] -> {'threshold': '0.9'}."""
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--param {pair!r}: expected NAME=VALUE")
        out[key.strip()] = value.strip()
    return out


def _lookup(name: str) -> type:
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; registered: {sorted(POLICIES)}")
    return POLICIES[name]


def _convert(key: str, value: str, hint) -> object:
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    if type(None) in typing.get_args(hint) and value.lower() in ("", "none"):
        return None
    target = args[0]
    try:
        if target is bool:
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        return target(value)
    except (TypeError, ValueError):
        raise ValueError(f"parameter {key}={value!r}: expected {getattr(target, '__name__', target)}") from None


__all__ = ["POLICIES", "EOSEarlyRejection", "EOSRejectionASS", "StepContext", "UnmaskPolicy", "build_policy",
           "describe_policies", "parse_params", "policy_params", "LearnedPolicy"]
