"""GSM8K problems as questions over a context, with the gold arguments of their calculations."""

from __future__ import annotations

import re

from mtlheads.data import numeric


def items(problems: list[dict]) -> list[dict]:
    """GSM8K problems as ``question`` (the last sentence) and ``context`` (the text before it),
    with the gold arguments that occur in the context; problems with none are left out."""
    items = []
    for p in problems:
        sentences = re.split(r"(?<=[.!?])\s+", p["question"].strip())
        if len(sentences) < 2:
            continue
        context, question = " ".join(sentences[:-1]), sentences[-1]
        calculations = p["calculations"]
        arguments = numeric.gold_arguments(context, calculations)
        if arguments:
            items.append({"question": question, "context": context, "answer": numeric.format_number(p["answer"]),
                          "operation": "GSM8K", "template": "GSM8K", "arguments": arguments})
    return items
