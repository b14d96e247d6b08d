"""EWT5: the five-task corpus (POS, NER, DEP, CON, SRL) on the English Web Treebank.

Joins three annotations of the same sentences:
- UD_English-EWT: words, UPOS, PTB tags (XPOS), dependency heads and relations; its
  train/dev/test split is the split of EWT5;
- propbank-release ``.gold_skel``: the gold PTB constituency tree and PropBank SRL frames,
  with words masked as ``[WORD]``, filled from UD (same documents, same sentence order);
- UNER_English-EWT: BIO tags over PER/LOC/ORG, joined by ``sent_id``.

A sentence is kept only if it carries all five layers; every drop is counted by reason.
The built corpus is written once to ``<data>/ewt5/<version>/`` with the SHA-256 of each of its
files, and reused while they match; a changed or cut file is reported, set aside and rebuilt.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

import datasets
from nltk import Tree
from tqdm.auto import tqdm

from mtlheads import cache
from mtlheads.data import readers, sources

SPLITS = ("train", "dev", "test")
TASKS = ("pos", "ner", "dep", "con", "srl")

# Drop reasons, in the order they are checked.
NO_PROPBANK_DOC = "no PropBank document"
SENTENCE_COUNT = "document's sentence count differs (UD vs PropBank)"
TOKEN_COUNT = "token count differs (UD vs PropBank)"
TREE_PARSE = "tree does not parse"
PREDICATE = "predicate misplaced"
NO_NER = "no UNER annotation"
NER_TOKENS = "tokens differ (UD vs UNER)"
DROP_REASONS = (NO_PROPBANK_DOC, SENTENCE_COUNT, TOKEN_COUNT, TREE_PARSE, PREDICATE, NO_NER, NER_TOKENS)

FEATURES = datasets.Features({
    "sent_id": datasets.Value("string"),
    "doc_id": datasets.Value("string"),
    "genre": datasets.Value("string"),
    "text": datasets.Value("string"),
    "tokens": datasets.Sequence(datasets.Value("string")),
    "upos": datasets.Sequence(datasets.Value("string")),
    "xpos": datasets.Sequence(datasets.Value("string")),
    "heads": datasets.Sequence(datasets.Value("int32")),
    "deprels": datasets.Sequence(datasets.Value("string")),
    "ner": datasets.Sequence(datasets.Value("string")),
    "tree": datasets.Value("string"),
    "srl": datasets.List({
        "predicate": datasets.Value("int32"),
        "roleset": datasets.Value("string"),
        "arguments": datasets.List({
            "start": datasets.Value("int32"),
            "end": datasets.Value("int32"),
            "role": datasets.Value("string"),
        }),
    }),
})

_BRACKET_ESCAPES = {"(": "-LRB-", ")": "-RRB-", "{": "-LCB-", "}": "-RCB-"}


SOURCE_NAMES = ("UD_English-EWT", "UNER_English-EWT", "propbank-release")
CHECKSUMS = "checksums.json"


def data_version(root: Path | None = None) -> str:
    """Hash of the sources' content (their files' SHA-256) and of the code that reads and joins them."""
    return cache.run_key("ewt5", sources.data_version(*SOURCE_NAMES, root=root),
                         code=[sys.modules[__name__]]).split("-", 1)[1][:12]


def tree_leaf(word: str) -> str:
    """A word as it stands in a bracketed tree: brackets escaped PTB-style, no spaces."""
    return _BRACKET_ESCAPES.get(word, word).replace(" ", "_").replace("(", "-LRB-").replace(")", "-RRB-")


def build_tree(words: list[str], skel: readers.SkelSentence) -> str:
    """Fill a skeleton tree's ``*`` slots with ``(TAG word)``; raise ValueError if it does not parse."""
    parts = []
    for word, tag, fragment in zip(words, skel.xpos, skel.tree_fragments):
        if fragment.count("*") != 1:
            raise ValueError(f"tree fragment {fragment!r} has no single '*'")
        parts.append(fragment.replace("*", f"({tag} {tree_leaf(word)})"))
    text = " ".join(parts)
    tree = Tree.fromstring(text)  # raises ValueError on unbalanced brackets
    if len(tree.leaves()) != len(words):
        raise ValueError(f"tree has {len(tree.leaves())} leaves for {len(words)} words")
    return text


def build_frames(skel: readers.SkelSentence) -> list[dict]:
    """SRL frames; raise ValueError when a column's V is not on its predicate's row."""
    predicates = [i for i, r in enumerate(skel.rolesets) if r != "-"]
    if len(predicates) != len(skel.arg_columns):
        raise ValueError(f"{len(predicates)} predicates but {len(skel.arg_columns)} argument columns")
    frames = []
    for predicate, column in zip(predicates, skel.arg_columns):
        spans = readers.parse_arg_column(column)
        verbs = [s for s in spans if s[2] == "V"]
        if len(verbs) != 1 or verbs[0][0] != predicate:
            raise ValueError(f"V of predicate at word {predicate} is at {[v[0] for v in verbs]}")
        frames.append({
            "predicate": predicate,
            "roleset": skel.rolesets[predicate],
            "arguments": [{"start": s, "end": e, "role": r} for s, e, r in spans if r != "V"],
        })
    return frames


def _propbank_documents(root: Path) -> dict[str, Path]:
    """UD document id (``genre-name``) -> its ``.gold_skel`` file."""
    base = root / "data" / "google" / "ewt"
    docs = {}
    for path in base.glob("**/*.gold_skel"):
        genre = path.relative_to(base).parts[0]
        docs[f"{genre}-{path.name.removesuffix('.xml.gold_skel')}"] = path
    return docs


def join_split(ud: list[readers.UDSentence], ner: dict[str, readers.NERSentence],
               skel_docs: dict[str, list[readers.SkelSentence]]) -> tuple[list[dict], Counter, Counter]:
    """Join one split. Returns (records, drops by reason, notes), ``skel_docs`` keyed by UD doc id."""
    records, drops, notes = [], Counter(), Counter()
    by_doc: dict[str, list[readers.UDSentence]] = {}
    for sent in ud:
        by_doc.setdefault(sent.doc_id, []).append(sent)
    for doc_id, sents in by_doc.items():
        skels = skel_docs.get(doc_id)
        if skels is None:
            drops[NO_PROPBANK_DOC] += len(sents)
            continue
        if len(skels) != len(sents):
            drops[SENTENCE_COUNT] += len(sents)
            continue
        for sent, skel in zip(sents, skels):
            if len(skel.xpos) != len(sent.tokens):
                drops[TOKEN_COUNT] += 1
                continue
            try:
                tree = build_tree(sent.tokens, skel)
            except ValueError:
                drops[TREE_PARSE] += 1
                continue
            try:
                frames = build_frames(skel)
            except ValueError:
                drops[PREDICATE] += 1
                continue
            entities = ner.get(sent.sent_id)
            if entities is None:
                drops[NO_NER] += 1
                continue
            if entities.tokens != sent.tokens:
                drops[NER_TOKENS] += 1
                continue
            if skel.xpos != sent.xpos:
                notes["XPOS differs from PropBank's tree (kept; POS uses UD's XPOS)"] += 1
            records.append({
                "sent_id": sent.sent_id, "doc_id": doc_id, "genre": doc_id.split("-", 1)[0],
                "text": sent.text, "tokens": sent.tokens, "upos": sent.upos, "xpos": sent.xpos,
                "heads": sent.heads, "deprels": sent.deprels, "ner": entities.tags,
                "tree": tree, "srl": frames,
            })
    return records, drops, notes


def build(root: Path | None = None) -> tuple[datasets.DatasetDict, dict]:
    """Build EWT5 from the fetched sources (fetching them first if needed)."""
    ud_dir = sources.fetch("UD_English-EWT", root)
    ner_dir = sources.fetch("UNER_English-EWT", root)
    pb_dir = sources.fetch("propbank-release", root)
    doc_paths = _propbank_documents(pb_dir)
    skel_docs = {doc: readers.read_gold_skel(p) for doc, p in tqdm(sorted(doc_paths.items()), desc="read PropBank")}
    splits, report = {}, {"kept": {}, "dropped": {}, "notes": {}}
    for split in tqdm(SPLITS, desc="join EWT5"):
        ud = readers.read_conllu(ud_dir / f"en_ewt-ud-{split}.conllu")
        ner = {s.sent_id: s for s in readers.read_iob2(ner_dir / f"en_ewt-ud-{split}.iob2")}
        records, drops, notes = join_split(ud, ner, skel_docs)
        splits[split] = datasets.Dataset.from_list(records, features=FEATURES)
        report["kept"][split] = len(records)
        report["dropped"][split] = {r: drops.get(r, 0) for r in DROP_REASONS}
        report["notes"][split] = dict(notes)
        report.setdefault("ud_sentences", {})[split] = len(ud)
    return datasets.DatasetDict(splits), report


def corpus_dir(root: Path | None = None) -> Path:
    return (root or sources.data_dir()) / "ewt5" / data_version()


def _built_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != CHECKSUMS)


def check_built(folder: Path) -> str | None:
    """What is wrong with a built corpus folder (a file missing, changed or added), or None."""
    try:
        pinned = json.loads((folder / CHECKSUMS).read_text())
    except (OSError, ValueError) as err:
        return f"{CHECKSUMS} unreadable ({type(err).__name__})"
    present = {p.relative_to(folder).as_posix() for p in _built_files(folder)}
    for relative, digest in pinned.items():
        if relative not in present:
            return f"{folder / relative} is missing"
        if cache.file_digest(folder / relative) != digest:
            return f"{folder / relative} has changed (SHA-256 {cache.file_digest(folder / relative)[:16]}..., built as {digest[:16]}...)"
    if extra := sorted(present - set(pinned)):
        return f"{folder / extra[0]} was not part of the build"
    return None


def load(root: Path | None = None, rebuild: bool = False) -> datasets.DatasetDict:
    """EWT5 as a ``DatasetDict`` with splits train/dev/test, built once and then read from disk."""
    folder = corpus_dir(root)
    problem = "rebuild asked for" if rebuild else (check_built(folder) if folder.exists() else "not built")
    if problem is not None:
        if folder.exists():
            aside = folder.parent / f".corrupt-{folder.name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
            os.replace(folder, aside)
            if not rebuild:
                warnings.warn(f"built EWT5 corpus at {folder}: {problem}; moved to {aside} and rebuilt", stacklevel=2)
        _publish(build(root), folder)
    return datasets.load_from_disk(str(folder / "corpus"))


def _publish(built: tuple[datasets.DatasetDict, dict], folder: Path) -> None:
    corpus, report = built
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".part"))
    try:
        corpus.save_to_disk(str(tmp / "corpus"))
        (tmp / "report.json").write_text(json.dumps(report, indent=2))
        (tmp / CHECKSUMS).write_text(json.dumps(
            {p.relative_to(tmp).as_posix(): cache.file_digest(p) for p in _built_files(tmp)}, indent=1))
        cache.set_modes(tmp)
        try:
            os.rename(tmp, folder)
        except OSError:  # another process built it first: keep theirs if it is whole
            if check_built(folder) is not None:
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def report(root: Path | None = None) -> dict:
    """The build report: sentences kept, dropped per split and reason, and notes."""
    load(root)
    return json.loads((corpus_dir(root) / "report.json").read_text())


def spans_from_bio(tags: list[str]) -> list[tuple[int, int, str]]:
    """Entity spans ``(start, end inclusive, label)`` of a BIO sequence; a stray I- opens a span."""
    spans, start, label = [], None, None
    for i, tag in enumerate(list(tags) + ["O"]):
        inside = tag.startswith("I-") and label == tag[2:]
        if start is not None and not inside:
            spans.append((start, i - 1, label))
            start, label = None, None
        if tag.startswith("B-") or (tag.startswith("I-") and not inside):
            start, label = i, tag[2:]
    return spans
