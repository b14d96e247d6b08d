"""SciTLDR-A: a paper's abstract and its one-sentence summaries (TLDRs).

Training examples have one TLDR; dev and test examples may have several (the author's and
peer reviewers'), and ROUGE is scored against the best-matching one, as SciTLDR does.
"""

from __future__ import annotations

from mtlheads.data import sources

SPLITS = ("train", "dev", "test")


def load(split: str, root=None) -> list[dict]:
    """``id``, ``document`` (the abstract's ``sentences`` joined by spaces) and ``summaries``."""
    if split not in SPLITS:
        raise ValueError(f"unknown SciTLDR split {split!r}; valid splits: {', '.join(SPLITS)}")
    return [{"id": record["paper_id"], "sentences": [s.strip() for s in record["source"] if s.strip()],
             "document": " ".join(s.strip() for s in record["source"] if s.strip()),
             "summaries": [t.strip() for t in record["target"] if t.strip()]}
            for record in sources.jsonl_records("scitldr", f"SciTLDR-Data/SciTLDR-A/{split}.jsonl", root,
                                                 keys=("paper_id", "source", "target"))]
