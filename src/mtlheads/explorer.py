"""The head explorer: one attention head of one model on one test sentence, beside what the book
measured of that head, as a page that works offline in the static HTML.

``word_attention`` reads a model's word-level attention maps; ``explorer_data`` packs them (one
byte a weight) with each head's probe accuracy per label (chapter 4), its gate survival per task
(chapter 3) and whether it is among the shared heads; ``page_html`` returns the page: a ``<div>``
with the data and the explorer's JavaScript and CSS (``static/``, in this package) inlined, so
nothing is fetched from a CDN. ``book_explorer`` gathers the book's models and measurements from
the run cache (chapters 2-7 compute them; it computes what is missing).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mtlheads.encoder import Encoder

STATIC = Path(__file__).resolve().parent / "static"
CLS = "[CLS]"


@dataclass
class ExplorerModel:
    """One model of the explorer: its ``name``, the ``chapter`` it comes from, its ``encoder``
    and, where chapter 4 probed it, its probes (``(task, variant) -> probes.LabelProbe``)."""

    name: str
    chapter: int
    encoder: Encoder
    probes: dict | None = None


@torch.no_grad()
def word_attention(encoder: Encoder, sentence: list[str]) -> np.ndarray:
    """(layers, heads, 1 + words, 1 + words): each head's attention from word to word (row: the
    attending word, [CLS] first), subwords averaged over the attending word's and summed over the
    attended word's (``Encoder.forward``)."""
    was_training = encoder.training
    encoder.eval()
    try:
        out = encoder.encode([sentence], capture=True)
    finally:
        encoder.train(was_training)
    return out.attentions[0].float().cpu().numpy()


def pack_bytes(values: np.ndarray, scale: float) -> str:
    """``values`` (in [0, scale]) as one byte each (255 = ``scale``), in base64."""
    if values.size and (np.nanmin(values) < -1e-6 or np.nanmax(values) > scale * (1 + 1e-6)):
        raise ValueError(f"values must lie in [0, {scale}], got [{np.nanmin(values)}, {np.nanmax(values)}]")
    quantised = np.rint(np.clip(np.nan_to_num(values), 0, scale) / scale * 255).astype(np.uint8)
    return base64.b64encode(quantised.tobytes()).decode("ascii")


def unpack_bytes(text: str, scale: float) -> np.ndarray:
    """The inverse of ``pack_bytes`` (to within ``scale / 510``), flat."""
    return np.frombuffer(base64.b64decode(text), dtype=np.uint8).astype(float) / 255 * scale


def probe_summary(probed: dict, min_count: int) -> dict:
    """Per task (its main probe, ``probes.main_variant``): the labels with at least ``min_count``
    test items, their counts, and each head's accuracy per label (percent, packed)."""
    from mtlheads import probes

    out = {}
    for (task, variant), probe in probed.items():
        if variant != probes.main_variant(task):
            continue
        keep = np.flatnonzero(probe.counts >= min_count)
        acc = probe.accuracy()[keep]  # (labels, layers, heads)
        out[task] = {"labels": [probe.labels[i] for i in keep], "counts": [int(probe.counts[i]) for i in keep],
                     "variant": variant, "accuracy": pack_bytes(acc, 100.0)}
    return out


def explorer_data(models: list[ExplorerModel], sentences: list[list[str]], gates: dict[str, np.ndarray],
                  shared: np.ndarray, min_count: int, notes: dict[str, str] | None = None) -> dict:
    """The explorer's data: every model's attention on every sentence (packed), the probed
    models' ``probe_summary``, each gated task's survival per head (``gates``: name -> (layers,
    heads) in [0, 1]) and the ``shared`` heads (boolean (layers, heads))."""
    if not models:
        raise ValueError("explorer_data needs at least one model")
    if not sentences or any(not s for s in sentences):
        raise ValueError(f"explorer_data needs non-empty sentences, got {sentences!r}")
    config = models[0].encoder.config
    layers, heads = config.num_hidden_layers, config.num_attention_heads
    for name, array in {**gates, "shared": shared}.items():
        if np.shape(array) != (layers, heads):
            raise ValueError(f"{name!r} must be (layers, heads) = {(layers, heads)}, got {np.shape(array)}")
    out_models = []
    for model in models:
        maps = [word_attention(model.encoder, s) for s in sentences]
        if maps[0].shape[:2] != (layers, heads):
            raise ValueError(f"model {model.name!r} has {maps[0].shape[:2]} heads; the others {(layers, heads)}")
        out_models.append({"name": model.name, "chapter": model.chapter,
                           "attention": [pack_bytes(m, 1.0) for m in maps],
                           "probes": probe_summary(model.probes, min_count) if model.probes else None})
    return {"layers": layers, "heads": heads, "sentences": [[CLS, *s] for s in sentences], "models": out_models,
            "gates": {name: np.round(np.asarray(g, dtype=float), 3).ravel().tolist() for name, g in gates.items()},
            "shared": np.asarray(shared, dtype=bool).ravel().astype(int).tolist(), "notes": dict(notes or {})}


def page_html(data: dict, element_id: str = "head-explorer") -> str:
    """The explorer as one HTML fragment: its CSS, a ``<div>`` it draws into, the data as JSON and
    its JavaScript, all inline (the page fetches nothing)."""
    script = (STATIC / "explorer.js").read_text()
    style = (STATIC / "explorer.css").read_text()
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return (f'<style>{style}</style>\n<div id="{element_id}" class="mh-explorer">'
            f'<noscript>The head explorer needs JavaScript.</noscript></div>\n'
            f'<script type="application/json" id="{element_id}-data">{payload}</script>\n'
            f'<script>{script}\nmhExplorer("{element_id}");</script>')


def test_sentences(corpus, count: int, min_words: int, max_words: int) -> list[list[str]]:
    """The first ``count`` test sentences of ``min_words`` to ``max_words`` words (unpicked)."""
    chosen = [s["tokens"] for s in corpus["test"] if min_words <= len(s["tokens"]) <= max_words][:count]
    if len(chosen) < count:
        raise ValueError(f"only {len(chosen)} test sentences have {min_words}-{max_words} words; {count} asked")
    return chosen


def book_explorer(knobs: dict, corpus=None, sentences: int = 3, min_words: int = 6, max_words: int = 12) -> dict:
    """``explorer_data`` for the book's models of the first seed: the pretrained encoder, chapter
    2's STL model per task and MTL-5 joint (with chapter 4's probes), the models of chapters 6, 7
    and 8 and their controls; chapter 3's gates (survival along the lambda path, per gated model)
    and shared heads. All from the run cache (what is missing is computed)."""
    from mtlheads import experiments, numreason, reader, readersum
    from mtlheads.data import ewt5
    from mtlheads.encoder import load_encoder
    from mtlheads.registry import RunKey
    from mtlheads.train import load_model, train_cached

    corpus = corpus if corpus is not None else ewt5.load()
    seed = experiments.stl_mtl_seeds(knobs)[0]
    models = [ExplorerModel("pretrained", 4, load_encoder(knobs["encoder"]), experiments.probe_cached(None, knobs, corpus))]
    for key, config in experiments.probe_models(knobs).items():
        if config is None or key.seed != seed or not (len(key.tasks) == 1 or key == experiments.probed_mtl(seed)):
            continue
        encoder = load_model(train_cached(config, corpus), corpus).encoder
        models.append(ExplorerModel(key.label, 2, encoder, experiments.probe_cached(config, knobs, corpus)))
    for chapter, experiment in ((6, numreason), (7, readersum), (8, reader)):
        first = experiment.profile_configs(knobs)[:2]  # the model and its control, the first seed
        for config in first:
            model = experiment.load(experiment.train_cached(config, progress=False))
            models.append(ExplorerModel(f"{config.label} (chapter {chapter})", chapter, model.encoder))
    paths = experiments.run_gate_paths(knobs, corpus, seeds=[seed])
    heads = next(iter(paths.values())).records[0].size
    top, k = experiments.head_count(knobs["gate_top"], heads), experiments.head_count(knobs["gate_mask_share"], heads)
    gates = {name: path.survival() for (name, _), path in paths.items()}
    shared = experiments.shared_heads(paths, top, seed, k)
    notes = {"seed": str(seed), "shared": f"the {k} heads most STL tasks keep among their {top} longest-open"}
    return explorer_data(models, test_sentences(corpus, sentences, min_words, max_words), gates, shared,
                         knobs["probe_min_count"], notes)
