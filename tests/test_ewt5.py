from collections import Counter

import pytest
from nltk import Tree

from mtlheads.data import ewt5, readers
from mtlheads.data.stats import constituents, layers_table, task_labels

FIRST_DOC = "weblog-juancole.com_juancole_20051126063000_ENG_20051126_063000"
FIRST_DOC_SKEL = "data/google/ewt/weblog/00/juancole.com_juancole_20051126063000_ENG_20051126_063000.xml.gold_skel"


@pytest.fixture(scope="module")
def first_doc(ud_dir, uner_dir, propbank_dir):
    ud = [s for s in readers.read_conllu(ud_dir / "en_ewt-ud-train.conllu") if s.doc_id == FIRST_DOC]
    ner = {s.sent_id: s for s in readers.read_iob2(uner_dir / "en_ewt-ud-train.iob2") if s.sent_id.startswith(FIRST_DOC)}
    skels = readers.read_gold_skel(propbank_dir / FIRST_DOC_SKEL)
    return ud, ner, skels


def test_join_of_one_document_matches_hand_read_annotation(first_doc):
    ud, ner, skels = first_doc
    records, drops, _ = ewt5.join_split(ud, ner, {FIRST_DOC: skels})
    assert len(records) + sum(drops.values()) == len(ud)
    first = records[0]
    assert first["tokens"][4:7] == ["American", "forces", "killed"]
    # Tree: PropBank's skeleton filled with UD's words.
    tree = Tree.fromstring(first["tree"])
    assert tree.leaves() == first["tokens"]
    assert tree.label() == "TOP" and tree[0].label() == "FRAG"
    assert (4, 5, "NP") in constituents(tree)  # "American forces"
    # SRL: "American forces killed Shaikh ... preacher at the mosque ... border"
    (frame,) = first["srl"]
    assert frame["predicate"] == 6 and frame["roleset"] == "kill.01"
    args = {(a["start"], a["end"], a["role"]) for a in frame["arguments"]}
    assert args == {(4, 5, "ARG0"), (7, 14, "ARG1"), (15, 27, "ARGM-LOC")}
    # NER: Al-Zaman (ORG), Shaikh Abdullah al-Ani (PER), Qaim (LOC); "American" (OTH) is dropped.
    assert ewt5.spans_from_bio(first["ner"]) == [(0, 2, "ORG"), (7, 11, "PER"), (22, 22, "LOC")]
    assert first["heads"][6] == 1 and first["deprels"][6] == "parataxis"


def test_join_counts_each_drop_reason(first_doc):
    ud, ner, skels = first_doc
    ud = ud[:5]
    skels = [readers.SkelSentence(s.lineno, list(s.xpos), list(s.tree_fragments), list(s.rolesets),
                                  [list(c) for c in s.arg_columns]) for s in skels[:5]]
    skels[0].xpos.append("NN")  # token count differs
    skels[1].tree_fragments[0] = skels[1].tree_fragments[0].replace("(TOP", "")  # unbalanced
    skels[2].rolesets = ["-"] * len(skels[2].rolesets)  # predicates no longer match columns
    del ner[ud[3].sent_id]  # no NER
    records, drops, _ = ewt5.join_split(ud, ner, {FIRST_DOC: skels})
    sent4 = next(s for s in ud[4:5])
    assert drops == Counter({ewt5.TOKEN_COUNT: 1, ewt5.TREE_PARSE: 1, ewt5.PREDICATE: 1, ewt5.NO_NER: 1})
    assert [r["sent_id"] for r in records] == [sent4.sent_id]
    records, drops, _ = ewt5.join_split(ud, ner, {})
    assert drops == Counter({ewt5.NO_PROPBANK_DOC: 5}) and not records
    records, drops, _ = ewt5.join_split(ud, ner, {FIRST_DOC: skels[:4]})
    assert drops == Counter({ewt5.SENTENCE_COUNT: 5})


def test_misplaced_predicate_is_refused():
    skel = readers.SkelSentence(1, ["NN", "VBZ"], ["(TOP(S(NP*)", "(VP*)))"], ["-", "be.01"], [["(V*)", "*"]])
    with pytest.raises(ValueError, match="V of predicate at word 1"):
        ewt5.build_frames(skel)


def test_tree_leaves_escape_brackets():
    skel = readers.SkelSentence(1, ["-LRB-", "NN", "-RRB-"], ["(TOP(NP*", "*", "*))"], ["-"] * 3, [])
    tree = Tree.fromstring(ewt5.build_tree(["(", "word", ")"], skel))
    assert tree.leaves() == ["-LRB-", "word", "-RRB-"]


@pytest.mark.parametrize("tags, spans", [
    (["B-PER", "I-PER", "O", "B-LOC"], [(0, 1, "PER"), (3, 3, "LOC")]),
    (["I-ORG", "I-ORG", "B-ORG"], [(0, 1, "ORG"), (2, 2, "ORG")]),
    (["B-PER", "I-LOC"], [(0, 0, "PER"), (1, 1, "LOC")]),
    (["O", "O"], []),
])
def test_spans_from_bio(tags, spans):
    assert ewt5.spans_from_bio(tags) == spans


def test_built_corpus_sizes_and_report_add_up():
    corpus = ewt5.load()
    report = ewt5.report()
    for split, (low, high) in {"train": (12300, 12544), "dev": (1900, 2001), "test": (2000, 2077)}.items():
        assert low <= len(corpus[split]) <= high
        assert report["kept"][split] == len(corpus[split])
        assert report["kept"][split] + sum(report["dropped"][split].values()) == report["ud_sentences"][split]
    example = corpus["dev"][0]
    assert len(example["tokens"]) == len(example["xpos"]) == len(example["heads"]) == len(example["ner"])
    assert Tree.fromstring(example["tree"]).leaves() == [ewt5.tree_leaf(w) for w in example["tokens"]]
    assert not set(corpus["train"].unique("genre")) - {"answers", "email", "newsgroup", "reviews", "weblog"}


def test_task_labels_and_layers_table_on_hand_example():
    example = {"tokens": ["Ann", "saw", "Bo"], "xpos": ["NNP", "VBD", "NNP"], "heads": [2, 0, 2],
               "deprels": ["nsubj", "root", "obj"], "ner": ["B-PER", "O", "B-PER"],
               "tree": "(TOP (S (NP (NNP Ann)) (VP (VBD saw) (NP (NNP Bo)))))",
               "srl": [{"predicate": 1, "roleset": "see.01",
                        "arguments": [{"start": 0, "end": 0, "role": "ARG0"}, {"start": 2, "end": 2, "role": "ARG1"}]}]}
    assert task_labels(example, "ner") == ["PER", "PER"]
    assert sorted(task_labels(example, "con")) == ["NP", "NP", "S", "VP"]
    assert task_labels(example, "srl") == ["ARG0", "ARG1"]
    with pytest.raises(ValueError, match=r"unknown task\(s\) \['lemma'\]; valid tasks: pos, ner, dep, con, srl"):
        task_labels(example, "lemma")
    table = layers_table(example)
    assert table["see.01"].tolist() == ["B-ARG0", "V", "B-ARG1"]


def test_a_cut_built_corpus_file_is_reported_set_aside_and_rebuilt(tmp_path, monkeypatch):
    from mtlheads.data import sources

    monkeypatch.setenv(sources.MIRROR_VARIABLE, str(sources.data_dir()))
    root = tmp_path / "data"
    sizes = {split: len(data) for split, data in ewt5.load(root).items()}
    folder = ewt5.corpus_dir(root)
    arrow = next((folder / "corpus" / "dev").glob("*.arrow"))
    arrow.write_bytes(arrow.read_bytes()[:1000])
    with pytest.warns(UserWarning, match=f"built EWT5 corpus at {folder}: {arrow} has changed"):
        rebuilt = ewt5.load(root)
    assert {split: len(data) for split, data in rebuilt.items()} == sizes
    (aside,) = folder.parent.glob(".corrupt-*")
    assert (aside / "corpus" / "dev" / arrow.name).stat().st_size == 1000  # kept for inspection
    assert ewt5.check_built(folder) is None
