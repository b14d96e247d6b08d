"""SRL: end-to-end span ranking (He et al., 2018).

Every word is a candidate predicate and every span of up to ``max_width`` words a candidate
argument. Unary scores prune them to the best ``0.4 n`` predicates and ``0.8 n`` arguments;
each kept (predicate, argument) pair gets role scores ``s_p + s_a + s_rel(role)``, with the
null role fixed at 0. Training maximises the likelihood of the gold role (or null) over the
kept pairs. In He et al. the pruner learns only through the kept pairs; ``unary_weight`` > 0
(not in the paper) adds a binary loss that teaches it directly which words are predicates and
which spans are arguments, so that short runs stop pruning the gold arguments away.
Decoding keeps each pair's best non-null role, drops arguments of a predicate that overlap a
better one, and predicts a predicate where it has an argument.
Metrics: F1 over (predicate, start, end, role) and predicate F1.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from mtlheads.tasks.base import MLP, Task, prf
from mtlheads.tasks.ner import greedy_flat_spans

NULL = "<null>"


def candidate_spans(n: int, max_width: int) -> torch.Tensor:
    """All (start, end) inclusive spans of up to ``max_width`` words in n words: (spans, 2)."""
    starts = torch.arange(n).repeat_interleave(max_width)
    ends = starts + torch.arange(max_width).repeat(n)
    keep = ends < n
    return torch.stack([starts[keep], ends[keep]], -1)


def srl_scores(predictions: list[set], golds: list[set]) -> dict[str, float]:
    """Argument F1 over (predicate, start, end, role) and predicate F1, in percent."""
    arg = prf(sum(len(p & g) for p, g in zip(predictions, golds)),
              sum(len(p) for p in predictions), sum(len(g) for g in golds))
    p_preds = [{q[0] for q in p} for p in predictions]
    g_preds = [{q[0] for q in g} for g in golds]
    pred = prf(sum(len(p & g) for p, g in zip(p_preds, g_preds)),
               sum(len(p) for p in p_preds), sum(len(g) for g in g_preds))
    return {"f1": arg["f1"], "precision": arg["precision"], "recall": arg["recall"], "predicate_f1": pred["f1"]}


class FactoredSpanLayer(nn.Module):
    """The first layer of an MLP over a span representation ``[h_start; h_end; head; width]``.

    ``head`` is the attention-weighted sum of the span's word vectors (He et al., 2018). A
    linear layer over a concatenation is a sum of linear maps of its parts, and a linear map
    of an attention-weighted sum is the weighted sum of the mapped words, so the layer is
    computed from per-word projections and prefix sums, never materialising a vector per
    (span, word): the same function as the concatenation MLP, at a fraction of the cost.
    Attention logits are bounded to [-15, 15] (``15 tanh(a / 15)``) so that float64 prefix
    sums of their exponentials stay exact to well within float32 precision.
    """

    def __init__(self, hidden: int, out: int, max_width: int, width_dim: int = 20):
        super().__init__()
        self.out = out
        self.words = nn.Linear(hidden, 3 * out)  # start, end, head parts
        self.width = nn.Sequential(nn.Embedding(max_width, width_dim), nn.Linear(width_dim, out, bias=False))

    def forward(self, h: torch.Tensor, attention: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
        """h (batch, n, hidden), attention logits (batch, n), spans (spans,) -> (batch, spans, out)."""
        start_part, end_part, head_part = self.words(h).split(self.out, -1)
        a = 15 * torch.tanh(attention / 15)
        weights = (a - a.max(-1, keepdim=True).values).double().exp()  # (batch, n)
        zeros = weights.new_zeros(h.shape[0], 1)
        weighted = torch.cat([zeros[..., None].expand(-1, -1, self.out), (weights[..., None] * head_part.double())], 1).cumsum(1)
        totals = torch.cat([zeros, weights], 1).cumsum(1)
        head = (weighted[:, ends + 1] - weighted[:, starts]) / (totals[:, ends + 1] - totals[:, starts])[..., None]
        return start_part[:, starts] + end_part[:, ends] + head.to(h.dtype) + self.width(ends - starts)


class SRL(Task):
    name, metric = "srl", "f1"
    order = 4
    columns, probe, paper_gate_lambda = ("srl",), "predicate span", 1e-3

    @staticmethod
    def labels_of(sentence):
        return [a["role"] for f in sentence["srl"] for a in f["arguments"]]

    @staticmethod
    def probe_items(sentence):
        return [(f["predicate"] + 1, a["start"] + 1, a["end"] + 1, a["role"])
                for f in sentence["srl"] for a in f["arguments"]]

    def __init__(self, hidden: int, roles: list[str], mlp: int = 150, max_width: int = 30,
                 width_dim: int = 20, arg_ratio: float = 0.8, pred_ratio: float = 0.4, dropout: float = 0.33,
                 unary_weight: float = 0.0):
        super().__init__()
        self.unary_weight = unary_weight
        self.roles = [NULL, *roles]
        self.index = {r: i for i, r in enumerate(self.roles)}
        self.max_width, self.arg_ratio, self.pred_ratio = max_width, arg_ratio, pred_ratio
        self.head_attention = nn.Linear(hidden, 1)
        self.act = nn.Sequential(nn.LeakyReLU(0.1), nn.Dropout(dropout))
        # Argument unary score: MLP over the span representation.
        self.arg_layer = FactoredSpanLayer(hidden, mlp, max_width, width_dim)
        self.arg_out = nn.Linear(mlp, 1)
        # Predicate unary score: MLP over the word.
        self.pred_unary = nn.Sequential(MLP(hidden, mlp, dropout), nn.Linear(mlp, 1))
        # Role scores: MLP over [predicate word; argument span representation].
        self.pair_span = FactoredSpanLayer(hidden, mlp, max_width, width_dim)
        self.pair_pred = nn.Linear(hidden, mlp, bias=False)
        self.pair_out = nn.Linear(mlp, len(self.roles) - 1)

    @classmethod
    def build(cls, train, hidden):
        return cls(hidden, sorted({a["role"] for s in train for f in s["srl"] for a in f["arguments"]}))

    def targets(self, sentences, num_words):
        return {"frames": [{(f["predicate"], a["start"], a["end"]): self.index.get(a["role"], 0)
                            for f in s["srl"] for a in f["arguments"]} for s in sentences]}

    def _pairs(self, words, word_mask):
        """Role scores (batch, P, A, roles) of the kept pairs, their mask, argument spans and
        predicates; and the unary scores of all candidate arguments and predicates."""
        h, mask = words[:, 1:], word_mask[:, 1:]
        batch, n, _ = h.shape
        lengths = word_mask.sum(-1) - 1  # words per sentence, kept on the device
        spans = candidate_spans(n, self.max_width).to(h.device)
        starts, ends = spans[:, 0], spans[:, 1]
        valid = mask[:, ends]  # a span is valid when its last word is a real word
        attention = self.head_attention(h).squeeze(-1)
        arg_scores = self.arg_out(self.act(self.arg_layer(h, attention, starts, ends))).squeeze(-1)
        arg_scores = arg_scores.masked_fill(~valid, float("-inf"))
        pred_scores = self.pred_unary(h).squeeze(-1).masked_fill(~mask, float("-inf"))
        top_args = arg_scores.topk(min(max(1, int(self.arg_ratio * n)), arg_scores.shape[1]), -1).indices  # (batch, A)
        top_preds = pred_scores.topk(min(max(1, int(self.pred_ratio * n)), n), -1).indices  # (batch, P)
        # Per sentence, only the best 0.8 n arguments and 0.4 n predicates of its own length n are kept.
        a_keep = torch.arange(top_args.shape[1], device=h.device)[None] < (self.arg_ratio * lengths).clamp(min=1)[:, None]
        p_keep = torch.arange(top_preds.shape[1], device=h.device)[None] < (self.pred_ratio * lengths).clamp(min=1)[:, None]
        a_keep &= torch.gather(valid, 1, top_args)
        p_keep &= torch.gather(mask, 1, top_preds)
        b_idx = torch.arange(batch, device=h.device)[:, None]
        arg_part = self.pair_span(h, attention, starts, ends)[b_idx, top_args]  # (batch, A, mlp)
        pred_part = self.pair_pred(h[b_idx, top_preds])  # (batch, P, mlp)
        role_scores = self.pair_out(self.act(pred_part[:, :, None] + arg_part[:, None]))
        unary = pred_scores[b_idx, top_preds][:, :, None] + arg_scores[b_idx, top_args][:, None, :]
        role_scores = role_scores + unary.masked_fill(~torch.isfinite(unary), 0.0)[..., None]
        scores = torch.cat([role_scores.new_zeros(*role_scores.shape[:-1], 1), role_scores], -1)  # null = 0
        pair_keep = p_keep[:, :, None] & a_keep[:, None, :]
        return scores, pair_keep, spans[top_args], top_preds, (spans, arg_scores, pred_scores)

    def loss(self, words, word_mask, targets):
        scores, keep, arg_spans, preds, unary = self._pairs(words, word_mask)
        gold = torch.zeros(keep.shape, dtype=torch.long)
        for b, frames in enumerate(targets["frames"]):
            if not frames:
                continue
            pred_at = {p: i for i, p in enumerate(preds[b].tolist())}
            arg_at = {(s, e): i for i, (s, e) in enumerate(arg_spans[b].tolist())}
            for (p, s, e), role in frames.items():
                if p in pred_at and (s, e) in arg_at:  # gold pairs pruned away are not in this loss
                    gold[b, pred_at[p], arg_at[(s, e)]] = role
        loss = F.cross_entropy(scores[keep], gold.to(scores.device)[keep])
        if self.unary_weight:
            loss = loss + self.unary_weight * self._unary_loss(*unary, targets["frames"])
        return loss

    @staticmethod
    def _unary_loss(spans, arg_scores, pred_scores, frames):
        """Binary cross-entropy of every candidate argument (a gold argument of some predicate or
        not) and every word (a gold predicate or not), over real spans and words only."""
        span_at = {(s, e): i for i, (s, e) in enumerate(spans.tolist())}
        arg_gold, pred_gold = torch.zeros(arg_scores.shape), torch.zeros(pred_scores.shape)
        for b, sentence in enumerate(frames):
            for p, s, e in sentence:
                pred_gold[b, p] = 1.0
                if (s, e) in span_at:  # wider than max_width: never a candidate
                    arg_gold[b, span_at[(s, e)]] = 1.0
        real_args, real_preds = torch.isfinite(arg_scores), torch.isfinite(pred_scores)
        return (F.binary_cross_entropy_with_logits(arg_scores[real_args], arg_gold.to(arg_scores.device)[real_args])
                + F.binary_cross_entropy_with_logits(pred_scores[real_preds], pred_gold.to(pred_scores.device)[real_preds]))

    def decode(self, words, word_mask):
        scores, keep, arg_spans, preds, _ = self._pairs(words, word_mask)
        probs = scores.softmax(-1)
        best_p, best = probs.max(-1)
        chosen = keep & (best > 0)
        out = []
        for b in range(scores.shape[0]):
            per_pred: dict[int, list] = {}
            for pi, ai in chosen[b].nonzero().tolist():
                s, e = arg_spans[b, ai].tolist()
                per_pred.setdefault(preds[b, pi].item(), []).append((best_p[b, pi, ai].item(), s, e, self.roles[best[b, pi, ai]]))
            out.append({(p, s, e, r) for p, cands in per_pred.items() for s, e, r in greedy_flat_spans(cands)})
        return out

    def gold(self, sentence):
        return {(f["predicate"], a["start"], a["end"], a["role"]) for f in sentence["srl"] for a in f["arguments"]}

    def blind(self, train, sentences):
        """No argument: F1 0."""
        return [set() for _ in sentences]

    def score(self, predictions, golds, sentences=None):
        return srl_scores(predictions, golds)
