import shutil

import pytest

from mtlheads.data import sources


def test_fetched_sources_verify_against_pinned_counts():
    for name in sources.SOURCES:
        counts = sources.verify(name)
        assert counts == {f.path: f.count for f in sources.SOURCES[name].files}


def test_unknown_source_lists_valid_ones():
    with pytest.raises(KeyError, match="unknown data source 'ontonotes'; valid sources: UD_English-EWT, "):
        sources.fetch("ontonotes")


def test_missing_source_names_file_url_and_mirror_variable(tmp_path, monkeypatch):
    empty_mirror = tmp_path / "mirror"
    empty_mirror.mkdir()
    monkeypatch.setenv(sources.MIRROR_VARIABLE, str(empty_mirror))
    with pytest.raises(sources.MissingSourceError) as err:
        sources.fetch("scitldr", root=tmp_path / "data")
    message = str(err.value)
    assert "scitldr/SciTLDR-Data/SciTLDR-A/train.jsonl" in message
    assert "https://raw.githubusercontent.com/allenai/scitldr/5ccad9c/SciTLDR-Data/SciTLDR-A/train.jsonl" in message
    assert sources.MIRROR_VARIABLE in message


def test_mirror_copy_of_a_truncated_file_is_refused(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    src = sources.data_dir() / "grade-school-math"
    shutil.copytree(src, mirror / "grade-school-math")
    test_file = mirror / "grade-school-math/grade_school_math/data/test.jsonl"
    test_file.write_text("".join(test_file.read_text().splitlines(keepends=True)[:100]))
    monkeypatch.setenv(sources.MIRROR_VARIABLE, str(mirror))
    with pytest.raises(ValueError, match="test.jsonl: expected 1319 records, found 100"):
        sources.fetch("grade-school-math", root=tmp_path / "data")


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


def test_fetch_from_mirror_copies_whole_source(tmp_path, monkeypatch):
    monkeypatch.setenv(sources.MIRROR_VARIABLE, str(sources.data_dir()))
    folder = sources.fetch("propbank-release", root=tmp_path / "data")
    assert len(list(folder.glob("data/google/ewt/**/*.gold_skel"))) == 1145
    assert not list(folder.rglob("*.part"))
