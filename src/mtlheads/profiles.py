"""Run profiles: ``params/<name>.yaml``, one flat set of knobs shared by all chapters.

A chapter's parameters cell names ``profile`` and sets every knob to ``None``; ``load`` fills
the knobs from the profile and lets any value the caller set (papermill ``-p``) win.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

PARAMS_DIR = Path(__file__).resolve().parents[2] / "params"


def available() -> list[str]:
    return sorted(p.stem for p in PARAMS_DIR.glob("*.yaml"))


def load(profile: str, **overrides: Any) -> dict[str, Any]:
    """The knobs of ``profile``, with every override that is not None applied."""
    path = PARAMS_DIR / f"{profile}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown profile {profile!r}; valid profiles: {', '.join(available())}")
    knobs = yaml.safe_load(path.read_text()) or {}
    unknown = sorted(k for k in overrides if k not in knobs)
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for profile {profile!r}; valid: {sorted(knobs)}")
    knobs.update({k: v for k, v in overrides.items() if v is not None})
    knobs["profile"] = profile
    return knobs
