"""The one model class of the book: a shared encoder plus one output head per task.

Every output head is a task of the model. Two kinds read the encoder:

- the Stem Cell decoders (``tasks.Task``: POS, NER, DEP, CON, SRL) read word states of a
  ``WordBatch`` (``encode``), through the head gates when the model has them; the Stem Cell
  trainer (``train.train``) makes their targets;
- the Geva heads (``heads``: span QA, BIO multi-span tagging, generation, classification on
  [CLS]) read subword states. Their examples are dicts with ``input_ids`` and the ``task`` they
  belong to; ``collate`` pads a mixed list of them and asks each head for the targets of the rows
  it trains on (``routes``), and ``losses`` makes one encoder pass and each head's loss over its
  own rows. A head that trains on no row of a batch has no loss in it.
"""

from __future__ import annotations

import torch
from torch import nn

from mtlheads import dropout
from mtlheads.encoder import Encoder, WordBatch
from mtlheads.gates import HardConcreteGates


class MultiTaskModel(nn.Module):
    """A shared ``encoder``, one head per task (``decoders``, by name), and optionally one set of
    head ``gates`` for all. ``routes`` names, per Geva head, the example tasks it trains on (None:
    every example; a head not named: the examples of its own name)."""

    def __init__(self, encoder: Encoder, decoders: dict[str, nn.Module], gates: HardConcreteGates | None = None,
                 routes: dict[str, tuple[str, ...] | None] | None = None):
        super().__init__()
        self.encoder = encoder
        self.decoders = nn.ModuleDict(decoders)
        self.gates = gates
        self.routes = {name: (name,) for name in decoders} | dict(routes or {})
        unknown = set(self.routes) - set(decoders)
        if unknown:
            raise ValueError(f"routes name heads {sorted(unknown)} the model lacks; its heads: {', '.join(decoders)}")
        dropout.install(self)  # the heads' dropout too (the encoder's is done)

    @property
    def tokenizer(self):
        return self.encoder.tokenizer

    def encode(self, batch: WordBatch):
        """Encoder outputs, with this step's gate values applied when the model is gated."""
        self.encoder.head_gates = self.gates() if self.gates is not None else None
        try:
            return self.encoder(batch)
        finally:
            self.encoder.head_gates = None

    def subword_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The encoder's last states (batch, subwords, hidden), the inputs moved to its device."""
        return self.encoder.subword_states(input_ids, attention_mask)

    def new_parameters(self) -> list[nn.Parameter]:
        """The parameters that start untrained (a trainer may give them a larger learning rate):
        each head's ``new_parameters()`` where it has them (a head partly copied from the
        encoder), else all of the head's."""
        out = []
        for decoder in self.decoders.values():
            out += decoder.new_parameters() if hasattr(decoder, "new_parameters") else list(decoder.parameters())
        return out

    def rows(self, name: str, examples: list[dict]) -> list[int]:
        """The positions in ``examples`` that head ``name`` trains on."""
        route = self.routes[name]
        return [i for i, e in enumerate(examples) if route is None or e["task"] in route]

    def collate(self, examples: list[dict]) -> dict:
        """A training batch of Geva examples, on the host: ``input_ids`` padded, the
        ``attention_mask``, and ``targets`` per head that trains on one of its rows (each head's
        ``batch_targets``)."""
        n, width = len(examples), max(len(e["input_ids"]) for e in examples)
        batch = {"input_ids": torch.full((n, width), self.tokenizer.pad_token_id),
                 "attention_mask": torch.zeros(n, width, dtype=torch.bool)}
        for i, e in enumerate(examples):
            batch["input_ids"][i, :len(e["input_ids"])] = torch.tensor(e["input_ids"])
            batch["attention_mask"][i, :len(e["input_ids"])] = True
        targets = {}
        for name, decoder in self.decoders.items():
            rows = self.rows(name, examples)
            if rows:
                targets[name] = decoder.batch_targets(examples, rows, width, self.tokenizer.pad_token_id)
        return batch | {"targets": targets}

    def losses(self, batch: dict) -> dict[str, torch.Tensor]:
        """One encoder pass over a ``collate``d batch; each head's loss over its own rows."""
        states = self.subword_states(batch["input_ids"], batch["attention_mask"])
        return {name: self.decoders[name].batch_loss(states, batch, targets)
                for name, targets in batch["targets"].items()}
