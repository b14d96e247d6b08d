import pytest
import torch
from transformers import AutoTokenizer

from mtlheads.data import pairs, squad
from mtlheads.encoder import resolve_encoder


@pytest.fixture(scope="module")
def tok():
    return AutoTokenizer.from_pretrained(resolve_encoder("minilm"))


def test_an_answers_characters_map_to_subwords_and_back(tok):
    """SQuAD answers (whole words in their context) map to subword positions whose characters are
    the answer again; the positions are context subwords."""
    mapped = 0
    for q in squad.load()[:200]:
        encoded = pairs.encode(tok, q["question"], q["context"], 384)
        start = q["answer_start"]
        end = start + len(q["answers"][0])
        place = pairs.token_range(encoded, pairs.SECOND, start, end)
        if place is None:
            continue
        mapped += 1
        assert all(encoded.parts[i] == pairs.SECOND for i in range(place[0], place[1] + 1))
        a, b = pairs.char_span(encoded, *place)
        assert a <= start and b >= end and q["context"][start:end] in q["context"][a:b]
    assert mapped >= 190  # at 384 subwords nearly every answer is inside the input


def test_truncation_cuts_the_second_text_only_and_loses_its_late_answers(tok):
    q = max(squad.load()[:300], key=lambda q: q["answer_start"])
    encoded = pairs.encode(tok, q["question"], q["context"], 32)
    assert len(encoded.input_ids) == 32
    question_ids = tok(q["question"], add_special_tokens=False)["input_ids"]
    assert [i for i, p in zip(encoded.input_ids, encoded.parts) if p == pairs.FIRST] == question_ids
    assert pairs.token_range(encoded, pairs.SECOND, q["answer_start"], q["answer_start"] + len(q["answers"][0])) is None
    assert encoded.mask() == [p is not None for p in encoded.parts]
    assert sum(encoded.mask(pairs.FIRST)) == len(question_ids)


def test_a_batch_holds_each_rows_encoding_padded(tok):
    questions = squad.load()[:5]
    batch = pairs.encode_batch(tok, [q["question"] for q in questions], [q["context"] for q in questions], 96)
    assert batch.input_ids.shape == batch.attention_mask.shape and batch.attention_mask.dtype == torch.bool
    for r, q in enumerate(questions):
        alone = pairs.encode(tok, q["question"], q["context"], 96)
        n = len(alone.input_ids)
        assert batch.rows[r].input_ids[:n] == alone.input_ids and batch.rows[r].parts[:n] == alone.parts
        assert batch.rows[r].offsets[:n] == alone.offsets and int(batch.attention_mask[r].sum()) == n
        assert batch.mask(pairs.SECOND)[r].tolist() == batch.rows[r].mask(pairs.SECOND)
    single = pairs.encode_batch(tok, [q["context"] for q in questions], None, 40)
    assert single.input_ids.shape[1] == 40 and {p for row in single.rows for p in row.parts} == {None, pairs.FIRST}
