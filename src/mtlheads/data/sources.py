"""Registry of upstream data sources, and the fetcher that brings them into the data folder.

Each source is pinned to an upstream commit, and each of its files by SHA-256 (a file pattern
by a manifest in ``checksums/`` that lists every matching file). ``fetch`` checks the files in
the data folder, and replaces each missing or changed one: from the mirror folder named by
``MTLHEADS_DATA_MIRROR`` when it is set (checked before it is copied), from upstream otherwise
(checked before it is written). Every file is written to a temporary name and renamed when
complete, so an interrupted fetch never leaves a file that looks whole. A corpus's data version
derives from its files' hashes.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
import urllib.request
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator

from tqdm.auto import tqdm

from mtlheads.cache import FILE_MODE, file_digest

MIRROR_VARIABLE = "MTLHEADS_DATA_MIRROR"
DATA_DIR_VARIABLE = "MTLHEADS_DATA_DIR"


CHECKSUMS_DIR = Path(__file__).resolve().parent / "checksums"


class MissingSourceError(FileNotFoundError):
    """A source file is neither in the data folder, nor in the mirror, nor downloadable."""


class ChecksumError(ValueError):
    """A source file's content is not the pinned version."""


class MalformedLineError(ValueError):
    """A line of a data file cannot be read: names the file and the 1-based line."""

    def __init__(self, path: Path | str, lineno: int, line: str, why: str):
        super().__init__(f"{path}:{lineno}: {why}: {line.rstrip()[:120]!r}")
        self.path, self.lineno = str(path), lineno


def text_lines(path: Path | str) -> Iterator[tuple[int, str]]:
    """(1-based line number, line) of a UTF-8 file; a byte that is not UTF-8 is a
    ``MalformedLineError`` naming the file, line and column."""
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise MalformedLineError(path, lineno, raw.decode("utf-8", "replace"),
                                         f"byte 0x{raw[err.start]:02x} at column {err.start + 1} is not UTF-8") from None


@dataclass(frozen=True)
class SourceFile:
    """One file of a source, at the upstream commit it is pinned to.

    ``path`` may be a glob pattern (``**`` allowed); such files come from the commit's archive,
    and ``sha256`` names their manifest in ``checksums/`` (``sha256sum`` lines, relative paths).
    Otherwise ``sha256`` holds the accepted digests (more than one where two published copies
    differ; the data version follows the one found). ``count`` is how many records a whole
    file holds (see ``Source.counter``); for a pattern, how many files match.
    """

    path: str
    commit: str
    count: int | None
    sha256: tuple[str, ...] | str

    def pins(self) -> dict[str, tuple[str, ...]]:
        """Relative path -> accepted digests, for every file this entry stands for."""
        if not _is_pattern(self.path):
            return {self.path: tuple(self.sha256)}
        return {path: (digest,) for path, digest in _manifest(self.sha256).items()}


@dataclass(frozen=True)
class Source:
    name: str  # folder name, as in the mirror
    repo: str  # upstream, e.g. "UniversalDependencies/UD_English-EWT"
    licence: str
    files: tuple[SourceFile, ...]
    counter: str = "lines"  # how records are counted: see COUNTERS
    url_template: str = "https://raw.githubusercontent.com/{repo}/{commit}/{path}"
    notes: str = ""

    def pins(self) -> dict[str, tuple[str, ...]]:
        return {path: digests for f in self.files for path, digests in f.pins().items()}

    def entries(self) -> dict[str, SourceFile]:
        """Relative path -> the registry entry that pins it."""
        return {path: f for f in self.files for path in f.pins()}

    def url(self, f: SourceFile) -> str:
        if _is_pattern(f.path):
            return f"https://github.com/{self.repo}/archive/{f.commit}.tar.gz"
        return self.url_template.format(repo=self.repo, commit=f.commit, path=f.path)


@lru_cache(maxsize=None)
def _manifest(name: str) -> dict[str, str]:
    manifest = {}
    for lineno, line in text_lines(CHECKSUMS_DIR / name):
        digest, _, path = line.rstrip("\n").partition("  ")
        if len(digest) != 64 or not path:
            raise MalformedLineError(CHECKSUMS_DIR / name, lineno, line, "expected '<sha256>  <path>'")
        manifest[path] = digest
    return manifest


def _count_sent_ids(path: Path) -> int:
    return sum(1 for _, line in text_lines(path) if line.startswith("# sent_id"))


def _count_lines(path: Path) -> int:
    return sum(1 for _, line in text_lines(path) if line.strip())


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
                SourceFile("en_ewt-ud-train.conllu", _UD, 12544,
                           ("3fb78e2b55482c8ee00caa653af436c88c9e5bc9a73ce26e4ae3ddc79d2b7e7b",)),
                SourceFile("en_ewt-ud-dev.conllu", _UD, 2001,
                           ("531a54ff90d6ab12201c5a50c3e78e6ddac4de69abc4bce5d275d3cd29efe2b6",)),
                SourceFile("en_ewt-ud-test.conllu", _UD, 2077,
                           ("e266e515a0a7547657ed3d90d9ba46487d6bd251f27ad4269d4e8a427c8555cd",)),
            ),
            counter="sent_ids",
            notes="v2.16",
        ),
        Source(
            "UNER_English-EWT", "UniversalNER/UNER_English-EWT", "CC BY-SA 4.0",
            (
                SourceFile("en_ewt-ud-train.iob2", _UNER_TRAIN, 12543,
                           ("2d986b063bb92df99540e37de34b1415eb2a22958b86de3e4698ec3be05e339f",)),
                SourceFile("en_ewt-ud-dev.iob2", _UNER, 2001,
                           ("0cafd881cf31d39897b6d588420fab8fbbe4423d271725c59921ac9dd49c0713",)),
                SourceFile("en_ewt-ud-test.iob2", _UNER, 2077,
                           ("821ad826d5f503ac03b4edc3fbc2174f21fbb005ec25863caf2051c434616d6e",)),
            ),
            counter="sent_ids",
            notes="train from upstream's first commit; tags B-OTH/I-OTH/B-O are mapped to O",
        ),
        Source(
            "propbank-release", "propbank/propbank-release", "CC BY-SA 4.0",
            (
                SourceFile("data/google/ewt/**/*.gold_skel", _PB, 1145, "propbank-release.sha256"),
                SourceFile("docs/evaluation/ewt.train.txt", _PB, 540,
                           ("e2a0dc8d778e524f78ce4003f4fdf2872a7ceb76f9effef9881ced0301bf6a9d",)),
                SourceFile("docs/evaluation/ewt.dev.txt", _PB, 318,
                           ("9367fa64a9b4ae6be916f556adf4284e4d52c029d44f499993eaaa86b608ffb6",)),
                SourceFile("docs/evaluation/ewt.test.txt", _PB, 316,
                           ("979b682dac25355056fa832cf9f535172417c536c56d87db93da4ba0b940b961",)),
            ),
            notes="words masked as [WORD]; filled from UD_English-EWT",
        ),
        Source(
            "SQuAD", "rajpurkar/SQuAD-explorer", "CC BY-SA 4.0",
            (SourceFile("dev-v1.1.json", "master", 10570, (
                "95aa6a52d5d6a735563366753ca50492a658031da74f301ac5238b03966972c9",  # the official file
                "c0aab83936dc1d2c335cb4b14636f12f96cd3059ea8136ef840f195357b4528c",  # the mirror's rebuilt copy
            )),),
            counter="squad_questions",
            url_template="https://rajpurkar.github.io/SQuAD-explorer/dataset/{path}",
            notes="the mirror's copy is rebuilt from the explorer's pages: answer_start is the first "
                  "occurrence of the answer, so its data version differs from the official file's",
        ),
        Source(
            "grade-school-math", "openai/grade-school-math", "MIT",
            (
                SourceFile("grade_school_math/data/train.jsonl", _GSM, 7473,
                           ("17f347dc51477c50d4efb83959dbb7c56297aba886e5544ee2aaed3024813465",)),
                SourceFile("grade_school_math/data/test.jsonl", _GSM, 1319,
                           ("3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14",)),
            ),
        ),
        Source(
            "scitldr", "allenai/scitldr", "Apache-2.0",
            (
                SourceFile("SciTLDR-Data/SciTLDR-A/train.jsonl", _TLDR, 1992,
                           ("b222771d387be585cfdf5ae957b36757138415a352e0a3e3b23f73f87c3b1119",)),
                SourceFile("SciTLDR-Data/SciTLDR-A/dev.jsonl", _TLDR, 619,
                           ("3191fa98ccc09521332b7a1cd63b1930be4e8df125a235ccd31e40329709525e",)),
                SourceFile("SciTLDR-Data/SciTLDR-A/test.jsonl", _TLDR, 618,
                           ("fb42dd6cd4f4a1928ae8a01a189456fbfe994a07e938bd49f68653933f6503c9",)),
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



def _mirror_hint() -> str:
    value = os.environ.get(MIRROR_VARIABLE)
    if value:
        return f"the mirror in use is {MIRROR_VARIABLE}={value}"
    return f"offline, set {MIRROR_VARIABLE} to a mirror folder (none is set)"


def _missing_message(source: Source, f: SourceFile, reason: str, relative: str | None = None) -> str:
    return (
        f"{source.name}/{relative or f.path} is missing ({reason}). Upstream: {source.url(f)} "
        f"(commit {f.commit}, licence {source.licence}); {_mirror_hint()}, which must hold "
        f"{source.name}/{relative or f.path}."
    )


def _checksum_message(where: Path, found: str, accepted: tuple[str, ...], source: Source, f: SourceFile) -> str:
    return (f"{where}: SHA-256 {found}, expected {' or '.join(accepted)} (the pinned version of "
            f"{source.name} at commit {f.commit}, {source.url(f)}); {_mirror_hint()}")


def _atomic_write(dst: Path, write) -> None:
    """Call ``write(tmp_path)`` on a temporary file beside ``dst``, then rename it into place."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".part")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, FILE_MODE)
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


def _problems(source: Source, folder: Path) -> dict[str, str]:
    """Relative path -> what is wrong with it, for every pinned file that is missing or changed."""
    problems = {}
    for relative, accepted in source.pins().items():
        path = folder / relative
        if not path.is_file():
            problems[relative] = f"not at {path}"
        elif (found := file_digest(path)) not in accepted:
            problems[relative] = f"SHA-256 {found}, expected {' or '.join(accepted)}"
    return problems


def verify(name: str, root: Path | None = None) -> dict[str, str]:
    """Check every file of a source against its pinned SHA-256; returns {relative path: digest}.

    Raises ``MissingSourceError`` naming a missing file, and ``ChecksumError`` naming a changed
    one (expected and found hash) or a file that a pattern matches but the manifest does not pin.
    """
    source = get_source(name)
    folder = (root or data_dir()) / source.name
    pins, entries = source.pins(), source.entries()
    for relative, why in _problems(source, folder).items():
        f = entries[relative]
        if why.startswith("not at"):
            raise MissingSourceError(_missing_message(source, f, why, relative))
        raise ChecksumError(_checksum_message(folder / relative, file_digest(folder / relative), pins[relative], source, f))
    for f in source.files:
        if _is_pattern(f.path):
            extra = [p for p in _match(folder, f.path) if p.relative_to(folder).as_posix() not in pins]
            if extra:
                raise ChecksumError(f"{extra[0]} (and {len(extra) - 1} more) matches {f.path} but is not in the "
                                    f"pinned manifest checksums/{f.sha256}; remove it")
    return {relative: file_digest(folder / relative) for relative in pins}


def _from_mirror(source: Source, mirror: Path, relatives: list[str], target: Path) -> None:
    pins, entries = source.pins(), source.entries()
    for relative in tqdm(relatives, desc=f"copy {source.name}", leave=False, disable=len(relatives) < 50):
        src, f = mirror / source.name / relative, entries[relative]
        if not src.is_file():
            raise MissingSourceError(_missing_message(source, f, f"not in mirror {mirror}", relative))
        if (found := file_digest(src)) not in pins[relative]:
            raise ChecksumError(_checksum_message(src, found, pins[relative], source, f))
        _atomic_copy(src, target / relative)


def _from_upstream(source: Source, relatives: list[str], target: Path) -> None:
    pins = source.pins()
    wanted = set(relatives)
    for f in source.files:
        mine = sorted(r for r in f.pins() if r in wanted)
        if not mine:
            continue
        try:
            payload = _download(source.url(f), f"{source.name}/{f.path}")
        except OSError as err:
            raise MissingSourceError(_missing_message(source, f, f"download failed: {err}")) from err
        if _is_pattern(f.path):
            with tarfile.open(fileobj=io.BytesIO(payload), mode="r:gz") as archive:
                files = {m.name.split("/", 1)[-1]: m for m in archive.getmembers() if m.isfile()}  # drop "<repo>-<commit>/"
                blobs = {r: archive.extractfile(files[r]).read() for r in mine if r in files}
        else:
            blobs = {f.path: payload}
        for relative in mine:
            if relative not in blobs:
                raise MissingSourceError(_missing_message(source, f, "not in the upstream archive", relative))
            found = hashlib.sha256(blobs[relative]).hexdigest()
            if found not in pins[relative]:
                raise ChecksumError(_checksum_message(Path(source.url(f)), found, pins[relative], source, f))
            _atomic_write_bytes(blobs[relative], target / relative)


def fetch(name: str, root: Path | None = None, force: bool = False) -> Path:
    """Bring source ``name`` into the data folder and check it; returns its folder.

    Each missing or changed file is replaced, from the mirror when ``MTLHEADS_DATA_MIRROR`` is
    set and from upstream otherwise; a changed file is reported as it is replaced."""
    source = get_source(name)
    target = (root or data_dir()) / source.name
    problems = {r: "forced" for r in source.pins()} if force else _problems(source, target)
    if problems:
        for relative, why in problems.items():
            if (target / relative).is_file() and not force:
                warnings.warn(f"{target / relative} is not the pinned version ({why}); replacing it", stacklevel=2)
        mirror = mirror_dir()
        if mirror is not None:
            _from_mirror(source, mirror, sorted(problems), target)
        else:
            _from_upstream(source, sorted(problems), target)
    verify(name, root)
    return target


def record_counts(name: str, root: Path | None = None) -> dict[str, int]:
    """Records per file of a fetched source (see ``Source.counter``); for a pattern, its files."""
    source = get_source(name)
    folder = fetch(name, root)
    return {f.path: len(f.pins()) if _is_pattern(f.path) else COUNTERS[source.counter](folder / f.path)
            for f in source.files}


def fetch_all(root: Path | None = None) -> dict[str, Path]:
    return {name: fetch(name, root) for name in tqdm(SOURCES, desc="fetch data")}


def data_version(*names: str, root: Path | None = None) -> str:
    """Version of the data of the named sources: a hash of their files' SHA-256 (fetched and
    checked first), so that any change to their content changes it."""
    digest = hashlib.sha256()
    for name in sorted(names):
        fetch(name, root)
        for relative, found in sorted(verify(name, root).items()):
            digest.update(f"{name}/{relative} {found}\n".encode())
    return digest.hexdigest()[:12]


def source_path(name: str, relative: str, root: Path | None = None) -> Path:
    """Path of one file of a source, fetching (and checking) the source first."""
    return fetch(name, root) / relative


def jsonl_records(name: str, relative: str, root: Path | None = None, keys: tuple[str, ...] = ()):
    """The records of one JSON-lines file of a source, one dict per line (blank lines skipped).

    A line that is not a JSON object, or lacks one of ``keys``, is a ``MalformedLineError``
    naming the file and line."""
    path = source_path(name, relative, root)
    yield from read_jsonl(path, keys)


def read_jsonl(path: Path | str, keys: tuple[str, ...] = ()):
    for lineno, line in text_lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise MalformedLineError(path, lineno, line, f"not JSON ({err.msg} at column {err.colno})") from None
        if not isinstance(record, dict):
            raise MalformedLineError(path, lineno, line, f"a JSON {type(record).__name__}, not an object")
        missing = [k for k in keys if k not in record]
        if missing:
            raise MalformedLineError(path, lineno, line, f"no key {missing[0]!r} (a record has {', '.join(keys)})")
        yield record
