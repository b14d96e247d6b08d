"""The source registry: every file pinned by SHA-256, checked on fetch and on copy from the mirror."""

import hashlib
import json
import shutil
import warnings

import pytest

from mtlheads.data import ewt5, sources, squad


def test_fetched_sources_match_their_pins_and_counts():
    for name, source in sources.SOURCES.items():
        digests = sources.verify(name)
        assert set(digests) == set(source.pins()) and all(d in source.pins()[p] for p, d in digests.items())
        assert sources.record_counts(name) == {f.path: f.count for f in source.files}
    assert len(sources.SOURCES["propbank-release"].pins()) == 1145 + 3


def test_unknown_source_lists_valid_ones():
    with pytest.raises(KeyError, match="unknown data source 'ontonotes'; valid sources: UD_English-EWT, "):
        sources.fetch("ontonotes")


def test_missing_source_names_file_url_and_the_mirror_in_use(tmp_path, monkeypatch):
    empty_mirror = tmp_path / "mirror"
    empty_mirror.mkdir()
    monkeypatch.setenv(sources.MIRROR_VARIABLE, str(empty_mirror))
    with pytest.raises(sources.MissingSourceError) as err:
        sources.fetch("scitldr", root=tmp_path / "data")
    message = str(err.value)
    assert "scitldr/SciTLDR-Data/SciTLDR-A/" in message
    assert "https://raw.githubusercontent.com/allenai/scitldr/5ccad9c/SciTLDR-Data/SciTLDR-A/" in message
    assert f"{sources.MIRROR_VARIABLE}={empty_mirror}" in message and "shared/data/mirror" not in message


def _mirror_copy(tmp_path, name):
    mirror = tmp_path / "mirror"
    shutil.copytree(sources.data_dir() / name, mirror / name)
    return mirror


def _edit_keeping_counts(path):
    """Change one word of a file, keeping every count (lines, sentences, records) the same."""
    text = path.read_text(encoding="utf-8")
    i = text.index("\t", text.index("\n1\t")) + 1  # the first word of the first sentence
    path.write_text(text[:i] + "X" + text[i + 1:], encoding="utf-8")


def test_a_mirror_file_with_edited_content_is_refused_naming_file_hashes_and_mirror(tmp_path, monkeypatch):
    mirror = _mirror_copy(tmp_path, "UD_English-EWT")
    edited = mirror / "UD_English-EWT/en_ewt-ud-dev.conllu"
    _edit_keeping_counts(edited)
    monkeypatch.setenv(sources.MIRROR_VARIABLE, str(mirror))
    with pytest.raises(sources.ChecksumError) as err:
        sources.fetch("UD_English-EWT", root=tmp_path / "data")
    message = str(err.value)
    found = hashlib.sha256(edited.read_bytes()).hexdigest()
    (expected,) = sources.SOURCES["UD_English-EWT"].pins()["en_ewt-ud-dev.conllu"]
    assert str(edited) in message and found in message and expected in message
    assert f"{sources.MIRROR_VARIABLE}={mirror}" in message
    assert not (tmp_path / "data/UD_English-EWT/en_ewt-ud-dev.conllu").exists()  # nothing bad copied


@pytest.mark.parametrize("damage", ["same counts, one word changed", "cut inside its last sentence"])
def test_a_changed_data_file_is_replaced_from_the_mirror_and_the_data_version_follows_content(
        tmp_path, monkeypatch, damage):
    monkeypatch.setenv(sources.MIRROR_VARIABLE, str(sources.data_dir()))
    root = tmp_path / "data"
    for name in ewt5.SOURCE_NAMES:
        sources.fetch(name, root=root)
    version = ewt5.data_version(root)
    dev = root / "UD_English-EWT/en_ewt-ud-dev.conllu"
    good = dev.read_bytes()
    if damage.startswith("same counts"):
        _edit_keeping_counts(dev)
    else:
        dev.write_bytes(good[:good.rindex(b"\n\n") - 40])
    with pytest.warns(UserWarning, match="en_ewt-ud-dev.conllu is not the pinned version"):
        assert ewt5.data_version(root) == version  # the bad copy replaced, so the same data again
    assert dev.read_bytes() == good


def test_an_emptied_propbank_document_is_replaced(tmp_path, monkeypatch):
    monkeypatch.setenv(sources.MIRROR_VARIABLE, str(sources.data_dir()))
    root = tmp_path / "data"
    folder = sources.fetch("propbank-release", root=root)
    document = sorted(folder.glob("data/google/ewt/**/*.gold_skel"))[3]
    good = document.read_bytes()
    document.write_bytes(b"")
    with pytest.raises(sources.ChecksumError, match=f"{document}: SHA-256 {hashlib.sha256(b'').hexdigest()}"):
        sources.verify("propbank-release", root=root)
    with pytest.warns(UserWarning, match="not the pinned version"):
        sources.fetch("propbank-release", root=root)
    assert document.read_bytes() == good


def test_a_squad_copy_missing_a_key_is_replaced_and_a_bad_file_read_directly_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv(sources.MIRROR_VARIABLE, str(sources.data_dir()))
    root = tmp_path / "data"
    path = sources.fetch("SQuAD", root=root) / squad.FILE
    data = json.loads(path.read_text())
    del data["data"][2]["paragraphs"][1]["qas"][0]["answers"]
    path.write_text(json.dumps(data))
    bad = tmp_path / "bad.json"
    shutil.copy(path, bad)
    with pytest.raises(squad.MalformedRecordError,
                       match=r"bad.json: data\[2\]\.paragraphs\[1\]\.qas\[0\] has no 'answers'"):
        squad.read(bad)
    with pytest.warns(UserWarning, match="dev-v1.1.json is not the pinned version"):
        questions = squad.load(root)
    assert len(questions) == 10570


def test_both_published_squad_files_are_accepted_with_their_own_data_versions():
    (pin,) = [f for f in sources.SOURCES["SQuAD"].files]
    assert len(pin.sha256) == 2  # the official file and the mirror's rebuilt copy


def test_interrupted_copy_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setenv(sources.MIRROR_VARIABLE, str(sources.data_dir()))

    def copy_then_fail(src, dst):
        with open(dst, "w") as fh:
            fh.write("half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(sources.shutil, "copyfile", copy_then_fail)
    with pytest.raises(KeyboardInterrupt):
        sources.fetch("scitldr", root=tmp_path / "data")
    left = [p for p in (tmp_path / "data").rglob("*") if p.is_file()]
    assert left == []


def test_fetch_from_mirror_copies_whole_source_with_normal_modes(tmp_path, monkeypatch):
    monkeypatch.setenv(sources.MIRROR_VARIABLE, str(sources.data_dir()))
    folder = sources.fetch("propbank-release", root=tmp_path / "data")
    files = list(folder.glob("data/google/ewt/**/*.gold_skel"))
    assert len(files) == 1145
    assert not list(folder.rglob("*.part"))
    assert {f.stat().st_mode & 0o777 for f in files} == {sources.FILE_MODE}


def test_the_data_versions_of_every_corpus_derive_from_the_file_hashes():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        versions = {name: sources.data_version(name) for name in sources.SOURCES}
    assert len(set(versions.values())) == len(versions)
    assert sources.data_version("SQuAD", "scitldr") not in versions.values()


def test_the_data_version_changes_with_any_files_content(tmp_path, monkeypatch):
    monkeypatch.setenv(sources.MIRROR_VARIABLE, str(sources.data_dir()))
    root = tmp_path / "data"
    path = sources.fetch("grade-school-math", root=root) / "grade_school_math/data/test.jsonl"
    version = sources.data_version("grade-school-math", root=root)
    path.write_text(path.read_text().replace(" the ", " teh ", 1))  # same counts, other content
    (entry,) = [f for f in sources.SOURCES["grade-school-math"].files if f.path.endswith("test.jsonl")]
    pinned = entry.sha256
    object.__setattr__(entry, "sha256", (*pinned, hashlib.sha256(path.read_bytes()).hexdigest()))  # a second copy
    try:
        assert sources.data_version("grade-school-math", root=root) != version
    finally:
        object.__setattr__(entry, "sha256", pinned)
