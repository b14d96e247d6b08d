import pytest

from conftest import block_containing, head_lines
from mtlheads.data.readers import (MalformedLineError, parse_arg_column, read_conllu, read_gold_skel,
                                   read_iob2)


def test_conllu_first_sentences_match_hand_read_annotation(ud_dir, tmp_path):
    path = tmp_path / "slice.conllu"
    path.write_text(head_lines(ud_dir / "en_ewt-ud-train.conllu", 3))
    sents = read_conllu(path)
    assert len(sents) == 3
    first = sents[0]
    assert first.sent_id.endswith("20051126_063000-0001")
    assert first.doc_id == "weblog-juancole.com_juancole_20051126063000_ENG_20051126_063000"
    assert first.tokens[:7] == ["Al", "-", "Zaman", ":", "American", "forces", "killed"]
    assert first.xpos[:7] == ["NNP", "HYPH", "NNP", ":", "JJ", "NNS", "VBD"]
    assert first.heads[:7] == [0, 3, 1, 7, 6, 7, 1]
    assert first.deprels[6] == "parataxis"
    assert len(first.tokens) == 29
    assert sents[1].doc_id == first.doc_id  # the document id carries over


def test_conllu_uses_syntactic_words_not_multiword_ranges(ud_dir, tmp_path):
    path = tmp_path / "mwt.conllu"
    path.write_text(block_containing(ud_dir / "en_ewt-ud-train.conllu", "\tdon't\t"))
    (sent,) = read_conllu(path)
    i = sent.tokens.index("do")
    assert sent.tokens[i + 1] == "n't"
    assert "don't" not in sent.tokens
    assert sent.heads and all(0 <= h <= len(sent.tokens) for h in sent.heads)


def test_conllu_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.conllu"
    path.write_text("# sent_id = a\n1\tHi\thi\tINTJ\tUH\t_\t0\troot\t0:root\t_\n2\tthere\tthere\tADV\n\n")
    with pytest.raises(MalformedLineError, match=r"bad\.conllu:3: expected 10 tab-separated columns, got 4"):
        read_conllu(path)


def test_conllu_head_must_be_a_number(tmp_path):
    path = tmp_path / "bad.conllu"
    path.write_text("# sent_id = a\n1\tHi\thi\tINTJ\tUH\t_\tX\troot\t0:root\t_\n\n")
    with pytest.raises(MalformedLineError, match=r"bad\.conllu:2: head 'X'"):
        read_conllu(path)


def test_iob2_maps_oth_and_stray_o_to_outside(uner_dir, tmp_path):
    path = tmp_path / "slice.iob2"
    path.write_text(head_lines(uner_dir / "en_ewt-ud-train.iob2", 1))
    (sent,) = read_iob2(path)
    assert sent.tokens[:3] == ["Al", "-", "Zaman"]
    assert sent.tags[:3] == ["B-ORG", "I-ORG", "I-ORG"]
    assert sent.tags[4] == "O"  # "American" is B-OTH upstream
    assert sent.tags[7:12] == ["B-PER", "I-PER", "I-PER", "I-PER", "I-PER"]
    assert sent.tags[22] == "B-LOC"  # Qaim
    assert sent.tags[28] == "O"  # the final "." is a stray B-O upstream


def test_iob2_unknown_tag_names_line(tmp_path):
    path = tmp_path / "bad.iob2"
    path.write_text("# sent_id = a\n1\tParis\tB-GPE\n\n")
    with pytest.raises(MalformedLineError, match=r"bad\.iob2:2: tag 'B-GPE'"):
        read_iob2(path)


def test_gold_skel_reads_columns(propbank_dir, tmp_path):
    src = propbank_dir / "data/google/ewt/weblog/00/juancole.com_juancole_20051126063000_ENG_20051126_063000.xml.gold_skel"
    path = tmp_path / "slice.gold_skel"
    path.write_text(head_lines(src, 1))
    (sent,) = read_gold_skel(path)
    assert len(sent.xpos) == 29
    assert sent.tree_fragments[0].startswith("(TOP")
    assert sent.rolesets[6] == "kill.01"
    assert len(sent.arg_columns) == 1
    spans = parse_arg_column(sent.arg_columns[0])
    assert (6, 6, "V") in spans and (4, 5, "ARG0") in spans and (7, 14, "ARG1") in spans


def test_gold_skel_ragged_sentence_names_line(tmp_path):
    path = tmp_path / "bad.gold_skel"
    path.write_text("d 0 0 [WORD] NN (TOP* - - *\nd 0 1 [WORD] NN *) - - * *\n")
    with pytest.raises(MalformedLineError, match=r"bad\.gold_skel:2: 10 columns where the sentence has 9"):
        read_gold_skel(path)


def test_arg_column_hand_example():
    column = ["(ARG0*", "*)", "(V*)", "(ARG1*", "*", "*)", "(ARGM-TMP*)"]
    assert parse_arg_column(column) == [(0, 1, "ARG0"), (2, 2, "V"), (3, 5, "ARG1"), (6, 6, "ARGM-TMP")]
    with pytest.raises(ValueError, match="never closes"):
        parse_arg_column(["(ARG0*", "*"])


def test_conllu_head_out_of_range_names_file_line_and_valid_heads(ud_dir, tmp_path):
    path = tmp_path / "bad.conllu"
    lines = head_lines(ud_dir / "en_ewt-ud-train.conllu", 1).split("\n")
    word = next(i for i, line in enumerate(lines) if line.startswith("5\t"))
    cols = lines[word].split("\t")
    cols[6] = "99"
    lines[word] = "\t".join(cols)
    path.write_text("\n".join(lines))
    with pytest.raises(MalformedLineError, match=rf"bad\.conllu:{word + 1}: head 99 is out of range: the sentence "
                                                 r"has 29 words \(valid heads: 0 to 29\)"):
        read_conllu(path)


@pytest.mark.parametrize("reader, suffix", [(read_conllu, "conllu"), (read_iob2, "iob2"), (read_gold_skel, "gold_skel")])
def test_a_byte_that_is_not_utf8_names_file_line_and_column(reader, suffix, tmp_path):
    path = tmp_path / f"bad.{suffix}"
    path.write_bytes(b"\n\nH\xe9\n")
    with pytest.raises(MalformedLineError, match=rf"bad\.{suffix}:3: byte 0xe9 at column 2 is not UTF-8"):
        reader(path)


@pytest.mark.parametrize("source, reader", [("UD_English-EWT/en_ewt-ud-dev.conllu", read_conllu),
                                            ("UNER_English-EWT/en_ewt-ud-dev.iob2", read_iob2)])
def test_a_file_cut_inside_its_last_sentence_is_refused(source, reader, tmp_path):
    from mtlheads.data import sources

    path = tmp_path / "cut"
    text = head_lines(sources.data_dir() / source, 3)
    path.write_text(text[:text.rstrip("\n").rindex("\n")] + "\n")  # the last word's line and blank line gone
    with pytest.raises(MalformedLineError, match=r"cut:\d+: the file ends inside a sentence"):
        reader(path)
    assert len(reader(_whole(tmp_path, text))) == 3  # the whole slice reads


def _whole(tmp_path, text):
    path = tmp_path / "whole"
    path.write_text(text)
    return path


def test_an_empty_propbank_document_is_refused(tmp_path):
    path = tmp_path / "empty.gold_skel"
    path.write_text("")
    with pytest.raises(MalformedLineError, match=r"empty\.gold_skel:1: no sentence in the file"):
        read_gold_skel(path)


@pytest.mark.parametrize("text, message", [
    ('{"question": "a", "answer": "#### 1"}\n{"question": "b", "ans\n', r"bad\.jsonl:2: not JSON"),
    ('{"question": "a", "answer": "#### 1"}\n{"question": "b"}\n', r"bad\.jsonl:2: no key 'answer'"),
    ('{"question": "a", "answer": "#### 1"}\n[1, 2]\n', r"bad\.jsonl:2: a JSON list, not an object"),
])
def test_a_bad_json_line_names_file_and_line(tmp_path, text, message):
    from mtlheads.data.sources import read_jsonl

    path = tmp_path / "bad.jsonl"
    path.write_text(text)
    with pytest.raises(MalformedLineError, match=message):
        list(read_jsonl(path, keys=("question", "answer")))


def test_blank_json_lines_are_skipped_a_trailing_one_too(tmp_path):
    from mtlheads.data.sources import read_jsonl

    path = tmp_path / "ok.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n\n')
    assert [r["a"] for r in read_jsonl(path, keys=("a",))] == [1, 2]
