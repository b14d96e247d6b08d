"""Run profiles: ``params/<name>.yaml``, one flat set of knobs shared by all chapters.

A chapter's parameters cell names ``profile`` and sets every knob to ``None``; its first cell
calls ``for_chapter`` with them, which fills the knobs from the profile and lets any value the
caller set (papermill ``-p``) win. Every knob has a type and range (``KNOBS``); a profile value
or an override outside it is an error that names the knob, the value and what is valid. A
parameter papermill injected that the chapter does not declare (``-p no_such_knob 3``) stops
the chapter there, at its first cell.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import yaml

from mtlheads import devices
from mtlheads.checks import Knob, check
from mtlheads.tasks import TASKS

PARAMS_DIR = Path(__file__).resolve().parents[2] / "params"
STL_MTL_TASKS = TASKS

_COUNT = Knob("int", low=1, nullable=True)  # how many items to use; None: all
_RATE = Knob("float", low=1e-9)
_SIZE = Knob("int", low=1)
KNOBS: dict[str, Knob] = {
    "profile": Knob("str"),
    "encoder": Knob("str"),
    "device": Knob("str"),  # 'auto', 'cpu', 'cuda' or 'cuda:N': checked and resolved by devices.canonical
    "bf16": Knob("bool"),  # bfloat16 autocast on CUDA (never on the CPU)
    "tokenizer_sentences": _COUNT,
    "seeds": Knob("ints", low=0),
    "stl_mtl_seeds": Knob("ints", low=0, nullable=True),
    "workers": _SIZE,
    "gate_lr": _RATE,  # chapter 3: the gates' Adam learning rate
    "gate_path_lambdas": Knob("floats", low=0),  # the L0 weights of a gated phase, in increasing order
    "gate_steps": _SIZE,  # gate updates per lambda
    "gate_top": Knob("float", low=1e-9, high=1),  # the share of heads compared per task: the longest-open
    "gate_mask_share": Knob("float", low=1e-9, high=1),  # the causal check: the share of heads removed ...
    "gate_mask_draws": _SIZE,  # ... and draws of random heads from their layers
    "gate_dev_sentences": _COUNT,  # dev sentences scored after each lambda (None: chapter 2's)
    "gate_permutations": Knob("int", low=100),  # draws of the layer-stratified null
    "probe_test_sentences": _COUNT,
    "probe_fit_sentences": _COUNT,
    "probe_min_count": Knob("int", low=0),
    # chapters 4-5 also probe task-pair MTL models: every pair ('all'), those of one task (its name), or none
    "pairwise_mtl": Knob("str", choices=("none", "all", *TASKS)),
    "paper_mtl": Knob("bool"),  # chapter 2 also trains the paper's MTL-5 (sampled, equal epochs per task)
    "focus_contexts": _COUNT,
    "rouge_documents": _COUNT,
    "qa_eval_questions": _COUNT,
    "numreason_span_eval": _COUNT,
    "reader_span_eval": _COUNT,  # chapter 8: held-out SQuAD questions for the span head's EM/F1
    "reader_pairs": _COUNT,  # chapter 8: held-out yes/no pairs read (null: all)
    "gsm8k_problems": _COUNT,
}
# A profile's sections: one per experiment, each key a field of the experiment's config class,
# checked by the class's rules (its module's ``RULES``) and read as the knob ``<prefix><field>``
# (``numreason: {lr: 5e-4}`` is ``numreason_lr``; ``stem_cell: {epochs: 2}`` is ``epochs``); a
# field left out keeps the class's default.
SECTIONS = {"stem_cell": ("train", ""), "numreason": ("numreason", "numreason_"), "readersum": ("readersum", "readersum_"),
            "reader": ("reader", "reader_")}
# Set for every run by the book (its encoder, seeds, device) or by a chapter (tasks, MTL mode, gates).
_NOT_IN_SECTIONS = {"tasks", "encoder", "seed", "device", "bf16", "mtl_mode", "gate_lambda", "lr_gates"}


def section_rules(section: str) -> dict[str, Knob]:
    """The fields a profile's ``section`` may set, with their rules (the config class's)."""
    import importlib

    rules = importlib.import_module(f"mtlheads.{SECTIONS[section][0]}").RULES
    return {name: knob for name, knob in rules.items() if knob is not None and name not in _NOT_IN_SECTIONS}


def section_knobs(knobs: dict[str, Any], section: str) -> dict[str, Any]:
    """``{field: value}`` of the fields a loaded profile's ``section`` sets."""
    prefix = SECTIONS[section][1]
    return {field: knobs[prefix + field] for field in section_rules(section) if prefix + field in knobs}


def knob(name: str) -> Knob | None:
    """The rule of knob ``name`` (a section's field under its prefix); None if there is none."""
    if name in KNOBS:
        return KNOBS[name]
    for section, (_, prefix) in SECTIONS.items():
        if name.startswith(prefix) and name[len(prefix):] in section_rules(section):
            return section_rules(section)[name[len(prefix):]]
    return None


def available() -> list[str]:
    return sorted(p.stem for p in PARAMS_DIR.glob("*.yaml"))


def read(profile: str) -> dict[str, Any]:
    """A profile's knobs as written, each checked against ``KNOBS`` (a section's against its
    config's rules), with every section flattened to ``<section>_<field>`` knobs."""
    path = PARAMS_DIR / f"{profile}.yaml"
    if not isinstance(profile, str) or not path.is_file():
        raise ValueError(f"unknown profile {profile!r}; valid profiles: {', '.join(available())}")
    written = yaml.safe_load(path.read_text()) or {}
    unknown = sorted(set(written) - set(KNOBS) - set(SECTIONS))
    missing = sorted(set(KNOBS) - set(written))
    if unknown or missing:
        raise ValueError(f"{path}: unknown knob(s) {unknown}, missing knob(s) {missing}; the knobs are {sorted(KNOBS)} "
                         f"and the sections {list(SECTIONS)}")
    knobs = {}
    for name, value in written.items():
        if name not in SECTIONS:
            knobs[name] = check(f"{path.name}: {name}", value, KNOBS[name])
            continue
        rules = section_rules(name)
        if not isinstance(value, dict) or set(value) - set(rules):
            raise ValueError(f"{path.name}: section {name} = {value!r} must map some of its fields to values; "
                             f"its fields: {', '.join(rules)}")
        for field, v in value.items():
            knobs[SECTIONS[name][1] + field] = check(f"{path.name}: {name}.{field}", v, rules[field])
    return knobs


def for_chapter(profile: str, page: tuple[str, ...] = (), **declared: Any) -> dict[str, Any]:
    """``load`` for a chapter's first cell, ``declared`` being its parameters cell's knobs (and
    ``page`` the names of a book page's parameters that are not knobs): a parameter papermill
    injected that the chapter does not declare is an error listing the valid ones (papermill
    itself only warns, and the chapter would run with the defaults)."""
    undeclared = sorted(set(injected_parameters()) - set(declared) - set(page) - {"profile"})
    if undeclared:
        raise ValueError(f"unknown parameter(s) {undeclared} given to this chapter; its parameters are "
                         f"{['profile', *declared, *page]} (profiles: {', '.join(available())})")
    return load(profile, **declared)


def load(profile: str, **overrides: Any) -> dict[str, Any]:
    """The knobs of ``profile``, with every override that is not None applied and checked."""
    knobs = read(profile)
    unknown = sorted(k for k in overrides if k not in knobs)
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for profile {profile!r}; valid: {sorted(knobs)}")
    for name, value in overrides.items():
        if value is None:
            continue
        knobs[name] = check(name, value, knob(name))
    knobs["device"] = devices.canonical(knobs["device"])
    knobs["profile"] = profile
    return knobs


PAPERMILL_MARK = "# Parameters"  # papermill's injected cell starts with this line


def injected_parameters() -> list[str]:
    """Names papermill injected into the running notebook (empty outside a notebook).

    Read from the kernel's input history: papermill runs its injected cell right after the
    parameters cell."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with the notebook stack
        return []
    shell = get_ipython()
    if shell is None:
        return []
    names = []
    for source in shell.user_ns.get("In", []):
        if isinstance(source, str) and source.lstrip().startswith(PAPERMILL_MARK):
            for node in ast.parse(source).body:
                if isinstance(node, ast.Assign):
                    names += [t.id for t in node.targets if isinstance(t, ast.Name)]
    return names
