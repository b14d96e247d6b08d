"""Output heads over a shared encoder's subword states: extractive span QA, BIO multi-span
tagging, a generative decoder and classification on [CLS]. Each is a task of
``model.MultiTaskModel`` with the same two faces besides its own ``loss`` and decoding:
``batch_targets(examples, rows, width, pad_id)`` (the targets of the rows it trains on, made on
the host) and ``batch_loss(states, batch, targets)``.

The generative head is a small transformer decoder (self-attention, cross-attention over the
encoder states, feed-forward; post-LayerNorm as in BERT) initialised from the encoder's own
weights as GenBERT does (Geva et al., 2020): its layers copy the encoder's top layers (the
cross-attention starts as a copy of the same layer's self-attention), its word embeddings and
output projection are the encoder's word embeddings (tied). [CLS] starts a sequence, [SEP]
ends it. Decoding is greedy or beam search, with or without cached keys and values.

With ``copy=True`` the head can also copy source tokens (a pointer-generator, See et al., 2017):
one attention over the encoder states gives a distribution over the source positions, and a gate
mixes the copy distribution (the attention summed per token id) with the vocabulary's. An
``output_vocab`` (token ids) restricts what the head can generate from the vocabulary side, as a
pointer-generator's fixed vocabulary does; other tokens can only be copied.
"""

from __future__ import annotations

import math
from copy import deepcopy

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Multi-head attention with BERT's projections; ``cache`` holds keys/values across steps."""

    def __init__(self, hidden: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.head_dim = heads, hidden // heads
        self.dropout = nn.Dropout(dropout)  # on the attention probabilities, in training
        self.query, self.key, self.value, self.out = (nn.Linear(hidden, hidden) for _ in range(4))

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], x.shape[1], self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor | None = None,
                causal: bool = False, cache: dict | None = None, static: bool = False) -> torch.Tensor:
        """x (batch, q, hidden) attends to memory (batch, k, hidden); mask (batch, 1, q or 1, k) bool,
        True = may attend. With ``cache``: ``static`` keys/values are computed once (cross-attention),
        otherwise the new ones are appended (self-attention, one step at a time)."""
        q = self._split(self.query(x))
        if cache is not None and static and "k" in cache:
            k, v = cache["k"], cache["v"]
        else:
            k, v = self._split(self.key(memory)), self._split(self.value(memory))
            if cache is not None:
                if not static and "k" in cache:
                    k, v = torch.cat([cache["k"], k], 2), torch.cat([cache["v"], v], 2)
                cache["k"], cache["v"] = k, v
        if self.training and self.dropout.p > 0:
            # written out, so that the probabilities go through the model's dropout module (which
            # mtlheads.dropout makes cheap); the fused kernel would draw torch's mask
            out = self.dropout(attention_probabilities(q, k, mask, causal)) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal and mask is None)
        return self.out(out.transpose(1, 2).flatten(2))

    def copy_from(self, encoder, layer) -> None:
        """Copy an encoder layer's query/key/value/output projections (``encoder``: an ``Encoder``)."""
        for mine, role in [(self.query, "query"), (self.key, "key"), (self.value, "value"),
                           (self.out, "attention_output")]:
            mine.load_state_dict(encoder.layer_part(layer, role).state_dict())


def attention_probabilities(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None, causal: bool) -> torch.Tensor:
    """Softmax attention (batch, heads, q, k) as ``F.scaled_dot_product_attention`` computes it: a
    bool ``mask`` (True = may attend) if given, else a causal mask if ``causal``."""
    scores = (q @ k.transpose(-1, -2)).mul_(q.shape[-1] ** -0.5)  # in place: the product's backward needs its inputs only
    if mask is None and causal:
        mask = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril()
    if mask is not None:
        scores.masked_fill_(~mask, float("-inf"))
    return scores.softmax(-1)


class DecoderLayer(nn.Module):
    def __init__(self, hidden: int, heads: int, intermediate: int, dropout: float, attention_dropout: float,
                 eps: float):
        super().__init__()
        self.self_attention = Attention(hidden, heads, attention_dropout)
        self.self_norm = nn.LayerNorm(hidden, eps=eps)
        self.cross_attention = Attention(hidden, heads, attention_dropout)
        self.cross_norm = nn.LayerNorm(hidden, eps=eps)
        self.ffn_in, self.ffn_out = nn.Linear(hidden, intermediate), nn.Linear(intermediate, hidden)
        self.ffn_norm = nn.LayerNorm(hidden, eps=eps)
        self.dropout = nn.Dropout(dropout)

    @classmethod
    def from_encoder(cls, encoder, layer) -> "DecoderLayer":
        """A decoder layer copying encoder ``layer`` of ``encoder`` (an ``Encoder``); the
        cross-attention starts as a copy of the self-attention."""
        config = encoder.config
        self = cls(config.hidden_size, config.num_attention_heads, config.intermediate_size,
                   config.hidden_dropout_prob, config.attention_probs_dropout_prob, config.layer_norm_eps)
        self.self_attention.copy_from(encoder, layer)
        self.cross_attention.copy_from(encoder, layer)
        for mine, role in [(self.self_norm, "attention_norm"), (self.cross_norm, "attention_norm"),
                           (self.ffn_in, "ffn_in"), (self.ffn_out, "ffn_out"), (self.ffn_norm, "ffn_norm")]:
            mine.load_state_dict(encoder.layer_part(layer, role).state_dict())
        return self

    def forward(self, x, memory, memory_mask, cache: dict | None = None) -> torch.Tensor:
        self_cache = cross_cache = None
        if cache is not None:
            self_cache, cross_cache = cache.setdefault("self", {}), cache.setdefault("cross", {})
        causal = cache is None or "k" not in self_cache  # a cached step attends to all that came before
        x = self.self_norm(x + self.dropout(self.self_attention(x, x, causal=causal, cache=self_cache)))
        x = self.cross_norm(x + self.dropout(self.cross_attention(x, memory, memory_mask, cache=cross_cache,
                                                                   static=True)))
        return self.ffn_norm(x + self.dropout(self.ffn_out(F.gelu(self.ffn_in(x)))))


class GenerativeHead(nn.Module):
    """A transformer decoder over encoder states, initialised from the encoder (see the module doc)."""

    def __init__(self, encoder, num_layers: int = 2, max_length: int = 64, copy: bool = False,
                 output_vocab: torch.Tensor | None = None):
        """``encoder``: the ``mtlheads.encoder.Encoder`` whose top ``num_layers`` layers and
        embeddings the head starts from."""
        super().__init__()
        config = encoder.config
        self.layers = nn.ModuleList(DecoderLayer.from_encoder(encoder, layer) for layer in encoder.layers[-num_layers:])
        self.word_embeddings = encoder.embedding("word_embeddings")  # shared with the encoder, and the output
        self.position_embeddings = nn.Embedding(max_length, config.hidden_size)
        self.position_embeddings.weight.data.copy_(encoder.embedding("position_embeddings").weight.data[:max_length])
        self.type_embedding = nn.Parameter(encoder.embedding("token_type_embeddings").weight.data[0].clone())
        self.norm = deepcopy(encoder.embedding("embedding_norm"))
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        ids = torch.arange(config.vocab_size) if output_vocab is None else torch.as_tensor(output_vocab).unique()
        self.register_buffer("output_ids", ids, persistent=False)
        position = torch.full((config.vocab_size,), -1, dtype=torch.long)
        position[ids] = torch.arange(len(ids))
        self.register_buffer("output_position", position, persistent=False)  # -1: not in the output vocabulary
        self.output_bias = nn.Parameter(torch.zeros(len(ids)))
        self.max_length = max_length
        self.copy = copy
        if copy:
            self.copy_query = nn.Linear(config.hidden_size, config.hidden_size)
            self.copy_gate = nn.Linear(2 * config.hidden_size, 1)

    def new_parameters(self) -> list[nn.Parameter]:
        """Parameters that do not start from the encoder's weights (they may want a larger learning rate)."""
        copying = [*self.copy_query.parameters(), *self.copy_gate.parameters()] if self.copy else []
        return [self.output_bias, *copying]

    def embed(self, tokens: torch.Tensor, offset: int = 0) -> torch.Tensor:
        positions = torch.arange(offset, offset + tokens.shape[1], device=tokens.device)
        if offset + tokens.shape[1] > self.max_length:
            raise ValueError(f"decoder sequence of {offset + tokens.shape[1]} tokens exceeds max_length {self.max_length}")
        x = self.word_embeddings(tokens) + self.position_embeddings(positions) + self.type_embedding
        return self.dropout(self.norm(x))

    def forward(self, tokens: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor,
                caches: list[dict] | None = None, offset: int = 0, source: torch.Tensor | None = None,
                targets: torch.Tensor | None = None) -> torch.Tensor:
        """Log-probabilities (batch, steps, vocab) of the next token after each of ``tokens``
        (batch, steps), given encoder ``memory`` (batch, source, hidden) and its padding mask
        (batch, source), True on real tokens. A copying head needs the ``source`` token ids
        (batch, source). With ``targets`` (batch, steps) only their log-probabilities are returned,
        (batch, steps), without building the copy distribution over the whole vocabulary. A token
        outside ``output_vocab`` has log-probability -inf unless the head copies it."""
        x = self.embed(tokens, offset)
        cross_mask = memory_mask[:, None, None, :].bool()
        for i, layer in enumerate(self.layers):
            x = layer(x, memory, cross_mask, cache=caches[i] if caches is not None else None)
        vocab = (x @ self.word_embeddings.weight[self.output_ids].T + self.output_bias).log_softmax(-1)
        if targets is not None:
            position = self.output_position[targets]
            vocab = vocab.gather(-1, position.clamp_min(0)[..., None]).squeeze(-1).masked_fill(position < 0, -torch.inf)
        elif len(self.output_ids) < len(self.output_position):
            full = vocab.new_full((*vocab.shape[:-1], len(self.output_position)), -torch.inf)
            vocab = full.index_copy_(-1, self.output_ids, vocab)
        if not self.copy:
            return vocab
        if source is None:
            raise ValueError("a copying GenerativeHead needs the source token ids")
        scores = self.copy_query(x) @ memory.transpose(1, 2) / math.sqrt(x.shape[-1])  # (batch, steps, source)
        attention = scores.masked_fill(~memory_mask[:, None, :].bool(), -torch.inf).softmax(-1)
        gate = torch.sigmoid(self.copy_gate(torch.cat([x, attention @ memory], -1)))  # (batch, steps, 1)
        if targets is not None:
            copied = (attention * (source[:, None, :] == targets[..., None])).sum(-1)
            gate = gate.squeeze(-1)
        else:
            copied = torch.zeros_like(vocab).scatter_add_(-1, source[:, None, :].expand_as(attention), attention)
        return (gate * vocab.exp() + (1 - gate) * copied).clamp_min(1e-12).log()

    def loss(self, targets: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor, pad_id: int,
             source: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher-forced cross-entropy of ``targets`` ([CLS] ... [SEP], padded), mean over real tokens."""
        gold = targets[:, 1:]
        logp = self(targets[:, :-1], memory, memory_mask, source=source, targets=gold)
        real = gold != pad_id
        return -torch.where(real, logp, 0.0).sum() / real.sum().clamp_min(1)

    def batch_targets(self, examples: list[dict], rows: list[int], width: int, pad_id: int) -> dict:
        """The ``target`` ids ([CLS] ... [SEP]) of the examples at ``rows``, padded (``MultiTaskModel.collate``)."""
        targets = torch.full((len(rows), max(len(examples[i]["target"]) for i in rows)), pad_id)
        for r, i in enumerate(rows):
            targets[r, :len(examples[i]["target"])] = torch.tensor(examples[i]["target"])
        return {"rows": torch.tensor(rows, dtype=torch.long), "targets": targets, "pad_id": pad_id}

    def batch_loss(self, states: torch.Tensor, batch: dict, targets: dict) -> torch.Tensor:
        """``loss`` over the rows of ``targets`` (a copying head copies from their input ids)."""
        rows = targets["rows"]
        return self.loss(targets["targets"], states[rows], batch["attention_mask"][rows], targets["pad_id"],
                         source=batch["input_ids"][rows])

    @torch.no_grad()
    def generate(self, memory: torch.Tensor, memory_mask: torch.Tensor, bos: int, eos: int, max_new: int = 40,
                 beams: int = 1, use_cache: bool = True, length_penalty: float = 1.0,
                 source: torch.Tensor | None = None, no_repeat: int = 0) -> list[list[int]]:
        """Token ids per input (without [CLS] and [SEP]): greedy with ``beams=1``, else beam search.
        A copying head needs the ``source`` token ids. ``no_repeat=n`` > 0 never lets an n-gram of
        tokens occur twice in an output (as fairseq's and transformers' ``no_repeat_ngram_size``)."""
        max_new = min(max_new, self.max_length - 1)
        if beams == 1:
            return self._greedy(memory, memory_mask, bos, eos, max_new, use_cache, source, no_repeat)
        return [self._beam(memory[i:i + 1], memory_mask[i:i + 1], bos, eos, max_new, beams, use_cache, length_penalty,
                           None if source is None else source[i:i + 1], no_repeat)
                for i in range(memory.shape[0])]

    def _step(self, sequences, memory, memory_mask, caches, use_cache, source, no_repeat):
        """Next-token log-probabilities (batch, vocab) for the last position of ``sequences``."""
        if use_cache:
            logp = self(sequences[:, -1:], memory, memory_mask, caches=caches, offset=sequences.shape[1] - 1,
                        source=source)
        else:
            logp = self(sequences, memory, memory_mask, source=source)
        logp = logp[:, -1]
        if no_repeat and sequences.shape[1] >= no_repeat:
            logp = logp.clone()
            for row, banned in enumerate(_repeating(sequences.tolist(), no_repeat)):
                logp[row, banned] = -torch.inf
        return logp

    def _greedy(self, memory, memory_mask, bos, eos, max_new, use_cache, source, no_repeat):
        batch = memory.shape[0]
        sequences = torch.full((batch, 1), bos, dtype=torch.long, device=memory.device)
        done = torch.zeros(batch, dtype=torch.bool, device=memory.device)
        caches = [{} for _ in self.layers]
        for _ in range(max_new):
            next_token = self._step(sequences, memory, memory_mask, caches, use_cache, source, no_repeat).argmax(-1)
            next_token = torch.where(done, torch.full_like(next_token, eos), next_token)
            sequences = torch.cat([sequences, next_token[:, None]], 1)
            done |= next_token == eos
            if done.all():
                break
        return [_strip(seq.tolist()[1:], eos) for seq in sequences]

    def _beam(self, memory, memory_mask, bos, eos, max_new, beams, use_cache, length_penalty, source, no_repeat):
        sequences = torch.full((1, 1), bos, dtype=torch.long, device=memory.device)
        scores = torch.zeros(1, device=memory.device)
        caches = [{} for _ in self.layers]
        finished: list[tuple[float, list[int]]] = []
        for step in range(max_new):
            mem = memory.expand(sequences.shape[0], -1, -1)
            mask = memory_mask.expand(sequences.shape[0], -1)
            src = None if source is None else source.expand(sequences.shape[0], -1)
            logp = self._step(sequences, mem, mask, caches, use_cache, src, no_repeat)  # (live, vocab)
            total = (scores[:, None] + logp).flatten()
            top = total.topk(min(2 * beams, total.numel()))
            vocab = logp.shape[1]
            keep_rows, keep_tokens, keep_scores = [], [], []
            for score, index in zip(top.values.tolist(), top.indices.tolist()):
                row, token = divmod(index, vocab)
                if token == eos:
                    length = step + 1
                    finished.append((score / length ** length_penalty, sequences[row].tolist()[1:]))
                else:
                    keep_rows.append(row)
                    keep_tokens.append(token)
                    keep_scores.append(score)
                if len(keep_rows) == beams:
                    break
            best_finished = max((s for s, _ in finished), default=-math.inf)
            if not keep_rows or (len(finished) >= beams and best_finished >= max(keep_scores) / (step + 1) ** length_penalty):
                break
            rows = torch.tensor(keep_rows, device=memory.device)
            sequences = torch.cat([sequences[rows], torch.tensor(keep_tokens, device=memory.device)[:, None]], 1)
            scores = torch.tensor(keep_scores, device=memory.device)
            if use_cache:  # follow the kept beams (the cross-attention cache is the same on every row)
                for cache in caches:
                    for part in cache.values():
                        part["k"], part["v"] = part["k"][rows], part["v"][rows]
        if not finished:
            finished = [(float(s) / max(1, sequences.shape[1] - 1) ** length_penalty, seq.tolist()[1:])
                        for s, seq in zip(scores, sequences)]
        return max(finished, key=lambda f: f[0])[1]


def _repeating(sequences: list[list[int]], n: int) -> list[list[int]]:
    """Per sequence, the tokens that would complete an n-gram it already contains."""
    banned = []
    for seq in sequences:
        prefix = tuple(seq[len(seq) - n + 1:]) if n > 1 else ()
        banned.append([seq[i + n - 1] for i in range(len(seq) - n + 1) if tuple(seq[i:i + n - 1]) == prefix])
    return banned


def _strip(tokens: list[int], eos: int) -> list[int]:
    return tokens[:tokens.index(eos)] if eos in tokens else tokens


class SpanQAHead(nn.Module):
    """Extractive QA: start and end logits per subword; the answer is the best-scoring span
    inside the context (``context_mask``), at most ``max_answer`` subwords long."""

    def __init__(self, hidden: int, max_answer: int = 30):
        super().__init__()
        self.proj = nn.Linear(hidden, 2)
        self.max_answer = max_answer

    def forward(self, states: torch.Tensor, context_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        start, end = self.proj(states).unbind(-1)
        blocked = ~context_mask.bool()
        return start.masked_fill(blocked, -1e4), end.masked_fill(blocked, -1e4)

    def loss(self, states, context_mask, starts: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
        start, end = self(states, context_mask)
        return (F.cross_entropy(start, starts) + F.cross_entropy(end, ends)) / 2

    @torch.no_grad()
    def batch_targets(self, examples: list[dict], rows: list[int], width: int, pad_id: int) -> dict:
        """The ``context_mask``, ``start`` and ``end`` of the examples at ``rows``, padded to ``width``."""
        context_mask = torch.zeros(len(rows), width, dtype=torch.bool)
        for r, i in enumerate(rows):
            context_mask[r, :len(examples[i]["context_mask"])] = torch.tensor(examples[i]["context_mask"])
        return {"rows": torch.tensor(rows, dtype=torch.long), "context_mask": context_mask,
                "starts": torch.tensor([examples[i]["start"] for i in rows]),
                "ends": torch.tensor([examples[i]["end"] for i in rows])}

    def batch_loss(self, states: torch.Tensor, batch: dict, targets: dict) -> torch.Tensor:
        return self.loss(states[targets["rows"]], targets["context_mask"], targets["starts"], targets["ends"])

    def decode(self, states, context_mask) -> list[tuple[int, int]]:
        """The best (start, end) subword positions per input, end >= start."""
        start, end = self(states, context_mask)
        n = start.shape[1]
        pair = start[:, :, None] + end[:, None, :]  # (batch, start, end)
        allowed = torch.ones(n, n, dtype=torch.bool, device=pair.device).triu().tril(self.max_answer - 1)
        pair = pair.masked_fill(~allowed, -torch.inf)
        best = pair.flatten(1).argmax(-1).tolist()  # one read back for the batch
        return [(b // n, b % n) for b in best]


class BIOTaggingHead(nn.Module):
    """Multi-span extraction by BIO tagging (Segal et al., 2020): a tag (O, B or I) per subword,
    predicted independently; a span is a B followed by Is.

    Training maximises the marginal likelihood of every tagging that is consistent with the gold
    answers: each answer text may occur several times in the input, every occurrence is either
    tagged as a span or left all O, at least one occurrence of each answer is tagged, and every
    other token is O. With independent tags this sums in closed form (``marginal_log_likelihood``).
    """

    O, B, I = range(3)

    def __init__(self, hidden: int):
        super().__init__()
        self.proj = nn.Linear(hidden, 3)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        """Tag log-probabilities (batch, tokens, 3)."""
        return self.proj(states).log_softmax(-1)

    def loss(self, states: torch.Tensor, tag_mask: torch.Tensor | None = None,
             answers: list[list[list[tuple[int, int]]]] | None = None, plans: list | None = None) -> torch.Tensor:
        """Mean negative marginal log-likelihood over the batch. ``tag_mask`` (batch, tokens) marks
        the taggable tokens; ``answers[b]`` lists, per gold answer, its occurrences as inclusive
        (start, end) token positions. ``plans`` (one ``tagging_plan`` per input, made on the host
        when the batch is built) replace the two, so the loss reads nothing back from the device."""
        logp = self(states)
        if plans is None:
            plans = [tagging_plan(row, answer) for row, answer in zip(tag_mask.tolist(), answers)]
        return -torch.stack([planned_log_likelihood(logp[b], *plan) for b, plan in enumerate(plans)]).mean()

    def batch_targets(self, examples: list[dict], rows: list[int], width: int, pad_id: int) -> dict:
        """The examples' tagging plans (from each one's ``tag_mask`` and ``answers``), made on the
        host when the batch is built, so a step reads nothing back."""
        return {"rows": torch.tensor(rows, dtype=torch.long),
                "plans": [tagging_plan(examples[i]["tag_mask"], examples[i]["answers"]) for i in rows]}

    def batch_loss(self, states: torch.Tensor, batch: dict, targets: dict) -> torch.Tensor:
        return self.loss(states[targets["rows"]], plans=targets["plans"])

    @torch.no_grad()
    def decode(self, states: torch.Tensor, tag_mask: torch.Tensor,
               at_least_one: bool = False) -> list[list[tuple[int, int]]]:
        """Inclusive (start, end) token spans per input, from the most probable tag of each
        taggable token; an I after an O starts a span, as a B does. With ``at_least_one``, an
        input whose most probable tagging has no span gets the most probable tagging that has one
        (the training objective's own assumption: every input has an answer), ``best_span``."""
        logp = self(states)
        mask = tag_mask.bool()
        tags = logp.argmax(-1).masked_fill(~mask, self.O).tolist()
        out = []
        for b, row in enumerate(tags):
            spans, start = [], None
            for i, tag in enumerate(row + [self.O]):
                if start is not None and tag != self.I:
                    spans.append((start, i - 1))
                    start = None
                if tag == self.B or (tag == self.I and start is None):
                    start = i
            if at_least_one and not spans and mask[b].any():
                spans = [best_span(logp[b], mask[b])]
            out.append(spans)
        return out


def best_span(logp: torch.Tensor, tag_mask: torch.Tensor) -> tuple[int, int]:
    """The inclusive (start, end) of the one span B I... whose tagging, every other taggable token
    O, is most probable, for ``logp`` (tokens, 3) whose most probable tags are all O: the span that
    costs least against all O, log P(B at start) + sum log P(I after it) - sum log P(O over it),
    within the taggable tokens ``tag_mask`` (tokens,). Where all O is the most probable tagging,
    this is the most probable tagging with at least one span (another span could only cost more)."""
    O, B, I = BIOTaggingHead.O, BIOTaggingHead.B, BIOTaggingHead.I
    logp, n = logp.float(), logp.shape[0]
    begin, inside = logp[:, B] - logp[:, O], logp[:, I] - logp[:, O]
    # score[s, e] = begin[s] + sum(inside[s + 1 : e + 1]), from cumulative sums; a span must lie
    # within the taggable tokens (no untaggable one between s and e, counted the same way).
    summed = torch.cat([inside.new_zeros(1), inside.cumsum(0)])
    untaggable = torch.cat([inside.new_zeros(1), (~tag_mask).float().cumsum(0)])
    score = begin[:, None] + summed[None, 1:] - summed[1:, None]
    valid = (untaggable[None, 1:] == untaggable[:-1, None]) & torch.ones(n, n, dtype=torch.bool,
                                                                          device=logp.device).triu()
    flat = int(score.masked_fill(~valid, float("-inf")).argmax())
    return flat // n, flat % n


class ClassificationHead(nn.Module):
    """A linear layer on [CLS] choosing among ``classes``: an example's class is its task's place
    in ``classes`` (the type head of MSEGenBERT chooses which head answers)."""

    def __init__(self, hidden: int, classes: tuple[str, ...]):
        super().__init__()
        self.classes = tuple(classes)
        self.proj = nn.Linear(hidden, len(self.classes))

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        """Class logits (batch, classes) from the [CLS] states of ``states`` (batch, subwords, hidden)."""
        return self.proj(states[:, 0])

    def batch_targets(self, examples: list[dict], rows: list[int], width: int, pad_id: int) -> dict:
        return {"rows": torch.tensor(rows, dtype=torch.long),
                "labels": torch.tensor([self.classes.index(examples[i]["task"]) for i in rows])}

    def batch_loss(self, states: torch.Tensor, batch: dict, targets: dict) -> torch.Tensor:
        return F.cross_entropy(self(states[targets["rows"]]), targets["labels"])


def tagging_plan(tag_mask: list[bool], answers: list[list[tuple[int, int]]]) -> tuple[torch.Tensor, list]:
    """What ``marginal_log_likelihood`` needs besides the tag scores, from host values: the
    positions that must be O (taggable and in no kept occurrence), as a long tensor, and the kept
    occurrences per answer. Occurrences that overlap an earlier one, or reach an untaggable token,
    are dropped; an answer left with none is dropped."""
    covered = [False] * len(tag_mask)
    kept = []
    for occurrences in answers:
        mine = []
        for start, end in occurrences:
            if not any(covered[start:end + 1]) and all(tag_mask[start:end + 1]):
                covered[start:end + 1] = [True] * (end + 1 - start)
                mine.append((start, end))
        if mine:
            kept.append(mine)
    free = [i for i, (m, c) in enumerate(zip(tag_mask, covered)) if m and not c]
    return torch.tensor(free, dtype=torch.long), kept


def planned_log_likelihood(logp: torch.Tensor, free: torch.Tensor, kept: list[list[tuple[int, int]]]) -> torch.Tensor:
    """log P(a tagging consistent with the answers) for one input, ``logp`` (tokens, 3), from a
    ``tagging_plan`` (``free`` may be on the host or on ``logp``'s device)."""
    O, B, I = BIOTaggingHead.O, BIOTaggingHead.B, BIOTaggingHead.I
    total = logp[:, O][free.to(logp.device)].sum()
    for occurrences in kept:
        tagged = torch.stack([logp[s, B] + logp[s + 1:e + 1, I].sum() for s, e in occurrences])
        untagged = torch.stack([logp[s:e + 1, O].sum() for s, e in occurrences])
        either = torch.logaddexp(tagged, untagged)
        # At least one occurrence tagged: sum over the first tagged one, k. Before k all O, after k either.
        before = torch.cat([untagged.new_zeros(1), untagged.cumsum(0)[:-1]])
        after = either.flip(0).cumsum(0).flip(0) - either
        total = total + torch.logsumexp(tagged + before + after, 0)
    return total


def marginal_log_likelihood(logp: torch.Tensor, tag_mask: torch.Tensor,
                            answers: list[list[tuple[int, int]]]) -> torch.Tensor:
    """log P(a tagging consistent with ``answers``) for one input, ``logp`` (tokens, 3) (see
    ``BIOTaggingHead``): every taggable token outside the kept occurrences is O, each occurrence
    is tagged B I... or left O, at least one of each answer tagged (``tagging_plan`` says which
    occurrences are kept). With no answers it is the log-probability of all O."""
    return planned_log_likelihood(logp, *tagging_plan(tag_mask.bool().tolist(), answers))
