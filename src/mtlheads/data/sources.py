"""Registry of upstream data sources, and the fetcher that brings them into the data folder.

Each source is pinned to an upstream commit. ``fetch`` copies a source from the mirror folder
named by ``MTLHEADS_DATA_MIRROR`` when it is set, and downloads it from upstream otherwise.
Every file is written to a temporary name and renamed when complete, so an interrupted
fetch never leaves a file that looks whole.
"""

from __future__ import annotations

import fnmatch
import io
import json
import os
import shutil
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tqdm.auto import tqdm

MIRROR_VARIABLE = "MTLHEADS_DATA_MIRROR"
DATA_DIR_VARIABLE = "MTLHEADS_DATA_DIR"


class MissingSourceError(FileNotFoundError):
    """A source file is neither in the data folder, nor in the mirror, nor downloadable."""


@dataclass(frozen=True)
class SourceFile:
    """One file of a source, at the upstream commit it is pinned to.

    ``path`` may be a glob pattern (``**`` allowed); such files come from the commit's archive.
    ``count`` is how many records a whole file holds (see ``Source.counter``); for a pattern,
    how many files must match.
    """

    path: str
    commit: str
    count: int | None = None


@dataclass(frozen=True)
class Source:
    name: str  # folder name, as in the mirror
    repo: str  # upstream, e.g. "UniversalDependencies/UD_English-EWT"
    licence: str
    files: tuple[SourceFile, ...]
    counter: str = "lines"  # how records are counted: see COUNTERS
    url_template: str = "https://raw.githubusercontent.com/{repo}/{commit}/{path}"
    notes: str = ""

    def url(self, f: SourceFile) -> str:
        if _is_pattern(f.path):
            return f"https://github.com/{self.repo}/archive/{f.commit}.tar.gz"
        return self.url_template.format(repo=self.repo, commit=f.commit, path=f.path)


def _count_sent_ids(path: Path) -> int:
    with open(path, encoding="utf-8") as fh:
        return sum(1 for line in fh if line.startswith("# sent_id"))


def _count_lines(path: Path) -> int:
    with open(path, encoding="utf-8") as fh:
        return sum(1 for line in fh if line.strip())


def _count_squad_questions(path: Path) -> int:
    data = json.loads(Path(path).read_text(encoding="utf-8"))["data"]
    return sum(len(p["qas"]) for a in data for p in a["paragraphs"])


COUNTERS: dict[str, Callable[[Path], int]] = {
    "sent_ids": _count_sent_ids,
    "lines": _count_lines,
    "squad_questions": _count_squad_questions,
}

_UD, _UNER, _UNER_TRAIN = "15d613d8", "8ed072d", "0c7ce0d"
_PB, _GSM, _TLDR = "4abade0b", "3101c7d", "5ccad9c"

SOURCES: dict[str, Source] = {
    s.name: s
    for s in [
        Source(
            "UD_English-EWT", "UniversalDependencies/UD_English-EWT", "CC BY-SA 4.0",
            (
                SourceFile("en_ewt-ud-train.conllu", _UD, 12544),
                SourceFile("en_ewt-ud-dev.conllu", _UD, 2001),
                SourceFile("en_ewt-ud-test.conllu", _UD, 2077),
            ),
            counter="sent_ids",
            notes="v2.16",
        ),
        Source(
            "UNER_English-EWT", "UniversalNER/UNER_English-EWT", "CC BY-SA 4.0",
            (
                SourceFile("en_ewt-ud-train.iob2", _UNER_TRAIN, 12543),
                SourceFile("en_ewt-ud-dev.iob2", _UNER, 2001),
                SourceFile("en_ewt-ud-test.iob2", _UNER, 2077),
            ),
            counter="sent_ids",
            notes="train from upstream's first commit; tags B-OTH/I-OTH/B-O are mapped to O",
        ),
        Source(
            "propbank-release", "propbank/propbank-release", "CC BY-SA 4.0",
            (
                SourceFile("data/google/ewt/**/*.gold_skel", _PB, 1145),
                SourceFile("docs/evaluation/ewt.train.txt", _PB, 540),
                SourceFile("docs/evaluation/ewt.dev.txt", _PB, 318),
                SourceFile("docs/evaluation/ewt.test.txt", _PB, 316),
            ),
            notes="words masked as [WORD]; filled from UD_English-EWT",
        ),
        Source(
            "SQuAD", "rajpurkar/SQuAD-explorer", "CC BY-SA 4.0",
            (SourceFile("dev-v1.1.json", "master", 10570),),
            counter="squad_questions",
            url_template="https://rajpurkar.github.io/SQuAD-explorer/dataset/{path}",
        ),
        Source(
            "grade-school-math", "openai/grade-school-math", "MIT",
            (
                SourceFile("grade_school_math/data/train.jsonl", _GSM, 7473),
                SourceFile("grade_school_math/data/test.jsonl", _GSM, 1319),
            ),
        ),
        Source(
            "scitldr", "allenai/scitldr", "Apache-2.0",
            (
                SourceFile("SciTLDR-Data/SciTLDR-A/train.jsonl", _TLDR, 1992),
                SourceFile("SciTLDR-Data/SciTLDR-A/dev.jsonl", _TLDR, 619),
                SourceFile("SciTLDR-Data/SciTLDR-A/test.jsonl", _TLDR, 618),
            ),
        ),
    ]
}


def _is_pattern(path: str) -> bool:
    return any(ch in path for ch in "*?[")


def data_dir() -> Path:
    """The git-ignored folder data is fetched into (``MTLHEADS_DATA_DIR`` or ``<project>/data``)."""
    if os.environ.get(DATA_DIR_VARIABLE):
        return Path(os.environ[DATA_DIR_VARIABLE])
    return Path(__file__).resolve().parents[3] / "data"


def mirror_dir() -> Path | None:
    value = os.environ.get(MIRROR_VARIABLE)
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        raise MissingSourceError(f"{MIRROR_VARIABLE}={value!r} is not a folder")
    return path


def get_source(name: str) -> Source:
    if name not in SOURCES:
        raise KeyError(f"unknown data source {name!r}; valid sources: {', '.join(SOURCES)}")
    return SOURCES[name]


def _match(root: Path, pattern: str) -> list[Path]:
    return sorted(p for p in root.glob(pattern) if p.is_file())


def _missing_message(source: Source, f: SourceFile, reason: str) -> str:
    return (
        f"{source.name}/{f.path} is missing ({reason}). Upstream: {source.url(f)} "
        f"(commit {f.commit}, licence {source.licence}). Offline, set {MIRROR_VARIABLE} to a "
        f"mirror folder holding {source.name}/{f.path} (here: ../shared/data/mirror)."
    )


def _atomic_write(dst: Path, write) -> None:
    """Call ``write(tmp_path)`` on a temporary file beside ``dst``, then rename it into place."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".part")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _atomic_copy(src: Path, dst: Path) -> None:
    _atomic_write(dst, lambda tmp: shutil.copyfile(src, tmp))


def _atomic_write_bytes(data: bytes, dst: Path) -> None:
    _atomic_write(dst, lambda tmp: Path(tmp).write_bytes(data))


def _download(url: str, desc: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (pinned https URLs)
        total = int(response.headers.get("Content-Length") or 0) or None
        buf = io.BytesIO()
        with tqdm(total=total, unit="B", unit_scale=True, desc=desc, leave=False) as bar:
            while chunk := response.read(1 << 16):
                buf.write(chunk)
                bar.update(len(chunk))
    return buf.getvalue()


def _fetch_from_upstream(source: Source, f: SourceFile, target: Path) -> None:
    url = source.url(f)
    try:
        payload = _download(url, f"{source.name}/{f.path}")
    except OSError as err:
        raise MissingSourceError(_missing_message(source, f, f"download failed: {err}")) from err
    if not _is_pattern(f.path):
        _atomic_write_bytes(payload, target / f.path)
        return
    with tarfile.open(fileobj=io.BytesIO(payload), mode="r:gz") as archive:
        for member in archive.getmembers():
            inner = member.name.split("/", 1)[-1]  # drop the "<repo>-<commit>/" prefix
            if member.isfile() and fnmatch.fnmatch(inner, f.path.replace("**/", "*")):
                _atomic_write_bytes(archive.extractfile(member).read(), target / inner)


def verify(name: str, root: Path | None = None) -> dict[str, int]:
    """Check that every file of a source arrived whole; returns the counts found.

    Raises ``MissingSourceError`` naming the file, and ``ValueError`` when a count differs.
    """
    source = get_source(name)
    folder = (root or data_dir()) / source.name
    counts = {}
    for f in source.files:
        if _is_pattern(f.path):
            found = len(_match(folder, f.path))
            if found == 0:
                raise MissingSourceError(_missing_message(source, f, f"nothing matches under {folder}"))
        else:
            path = folder / f.path
            if not path.is_file():
                raise MissingSourceError(_missing_message(source, f, f"not at {path}"))
            found = COUNTERS[source.counter](path)
        if f.count is not None and found != f.count:
            raise ValueError(
                f"{source.name}/{f.path}: expected {f.count} records, found {found}; "
                f"the file is incomplete or not the pinned version ({source.url(f)})"
            )
        counts[f.path] = found
    return counts


def fetch(name: str, root: Path | None = None, force: bool = False) -> Path:
    """Bring source ``name`` into the data folder (from the mirror, else upstream); returns its folder."""
    source = get_source(name)
    target = (root or data_dir()) / source.name
    if not force:
        try:
            verify(name, root)
            return target
        except (MissingSourceError, ValueError):
            pass
    mirror = mirror_dir()
    for f in source.files:
        if mirror is None:
            _fetch_from_upstream(source, f, target)
            continue
        if _is_pattern(f.path):
            matched = _match(mirror / source.name, f.path)
            if not matched:
                raise MissingSourceError(_missing_message(source, f, f"not in mirror {mirror}"))
        else:
            matched = [mirror / source.name / f.path]
            if not matched[0].is_file():
                raise MissingSourceError(_missing_message(source, f, f"not in mirror {mirror}"))
        for src in tqdm(matched, desc=f"copy {source.name}", leave=False, disable=len(matched) < 50):
            _atomic_copy(src, target / src.relative_to(mirror / source.name))
    verify(name, root)
    return target


def fetch_all(root: Path | None = None) -> dict[str, Path]:
    return {name: fetch(name, root) for name in tqdm(SOURCES, desc="fetch data")}


def source_path(name: str, relative: str, root: Path | None = None) -> Path:
    """Path of one file of a source, fetching the source first when it is not there yet."""
    return fetch(name, root) / relative


def jsonl_records(name: str, relative: str, root: Path | None = None):
    """The records of one JSON-lines file of a source, one dict per line."""
    with open(source_path(name, relative, root), encoding="utf-8") as fh:
        for line in fh:
            yield json.loads(line)
