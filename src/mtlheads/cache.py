"""Run cache: results and trained models stored under a hash of everything that determines them.

A key is the SHA-256 of (what, config, input versions, code version). The inputs are named
versions of what a run reads (a corpus's data version, an encoder checkpoint's fingerprint).
The code version covers the import closure of the modules that compute the result: every
``mtlheads`` module they import, directly or not, found by reading their source (no hand-kept
list), with docstrings and comments left out, plus the versions of the numerical libraries.

Entries are written to a temporary folder and renamed into place, so an interrupted run leaves
no half-written entry; each carries the SHA-256 of its result file, and an entry that fails its
check (truncated, missing its result, unreadable) is reported by path, moved aside to
``<cache>/.corrupt/`` and recomputed, never served. A full disk does not lose a result: the
entry is not written, a ``CacheFullWarning`` says so, and the result is returned (and computed
again next time).

    result = cached("train", config, compute=lambda: train(config), inputs={"ewt5": version},
                    code=[sys.modules[__name__]])
"""

from __future__ import annotations

import ast
import dataclasses
import errno
import hashlib
import json
import os
import pickle
import shutil
import time
import uuid
import warnings
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterable

CACHE_DIR_VARIABLE = "MTLHEADS_CACHE_DIR"
PACKAGE = "mtlheads"
PACKAGE_ROOT = Path(__file__).resolve().parent
# Libraries whose version changes numbers: part of every code version.
LIBRARIES = ("torch", "transformers", "tokenizers", "numpy", "datasets")
RESULT, META = "result.pkl", "meta.json"

_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE, DIR_MODE = 0o666 & ~_UMASK, 0o777 & ~_UMASK


class CorruptEntryWarning(UserWarning):
    """A cache entry failed its check; it was moved aside and is recomputed."""


class CacheFullWarning(UserWarning):
    """A result could not be stored (the disk or quota is full); it was returned, not cached."""


FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class CacheNotWritableError(PermissionError):
    """The cache folder cannot be written: said before any training, not after."""


def cache_dir() -> Path:
    """``MTLHEADS_CACHE_DIR`` or ``<project>/.cache/runs``."""
    if os.environ.get(CACHE_DIR_VARIABLE):
        return Path(os.environ[CACHE_DIR_VARIABLE])
    return PACKAGE_ROOT.parents[1] / ".cache" / "runs"


# File digests, memoised per process by (device, inode, size, mtime): a file is read once unless
# it changes (a file replaced by a rename is another inode). One stat a call, no path resolving:
# the data's version checks thousands of files each time a cached result is looked up.
_DIGESTS: dict[tuple, str] = {}


def file_digest(path: Path | str, normalise: Callable[[bytes], bytes] | None = None) -> str:
    """SHA-256 (hex) of a file's bytes, or of ``normalise(bytes)``."""
    stat = os.stat(path)
    memo = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, normalise)
    if memo not in _DIGESTS:
        with open(path, "rb") as f:
            data = f.read()
        _DIGESTS[memo] = hashlib.sha256(normalise(data) if normalise else data).hexdigest()
    return _DIGESTS[memo]


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def source_code(data: bytes) -> bytes:
    """What a module's source does: its syntax tree without docstrings (comments never enter it)."""
    return ast.dump(_strip_docstrings(ast.parse(data)), include_attributes=False).encode()


def _module_path(name: str, root: Path, package: str) -> Path | None:
    if name != package and not name.startswith(package + "."):
        return None
    parts = name.split(".")[1:]
    for candidate in (root.joinpath(*parts, "__init__.py"), root.joinpath(*parts).with_suffix(".py") if parts else None):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def _module_name(path: Path, root: Path, package: str) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([package, *parts])


_IMPORTS: dict[tuple, set[str]] = {}


def _imported(path: Path, root: Path, package: str) -> set[str]:
    """The package modules one source file imports, anywhere in it (functions too); memoised
    per process by the file's size and modification time."""
    stat = path.stat()
    memo = (str(path), stat.st_size, stat.st_mtime_ns, str(root), package)
    if memo not in _IMPORTS:
        _IMPORTS[memo] = _read_imports(path, root, package)
    return _IMPORTS[memo]


def _read_imports(path: Path, root: Path, package: str) -> set[str]:
    tree = ast.parse(path.read_bytes())
    here = _module_name(path, root, package).split(".")
    if path.name != "__init__.py":
        here = here[:-1]  # the package a relative import starts from
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(here[:len(here) - node.level + 1] + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import module`
    found = set()
    for name in names:
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a, a.b and a.b.c
            if _module_path(".".join(parts[:i]), root, package) is not None:
                found.add(".".join(parts[:i]))
    return found


def package_of(path: Path) -> tuple[Path, str]:
    """(folder, name) of the top-level package a source file belongs to (its own folder and
    stem for a file outside any package)."""
    folder = path.parent
    if not (folder / "__init__.py").is_file():
        return folder, path.stem
    while (folder.parent / "__init__.py").is_file():
        folder = folder.parent
    return folder, folder.name


DISCOVERING = "pkgutil.iter_modules(__path__)"  # a package __init__ that imports all its modules (mtlheads.tasks)


def import_closure(modules: Iterable[ModuleType | str | Path]) -> list[Path]:
    """The source files of ``modules`` and of every module of their package they import,
    transitively; a package whose ``__init__`` imports all its modules by discovery
    (``DISCOVERING``, as ``mtlheads.tasks`` finds its tasks) brings all of them.

    ``modules`` are module objects, dotted ``mtlheads`` names or paths of source files."""
    todo = []
    for m in modules:
        if isinstance(m, ModuleType):
            m = m.__file__
        path = _module_path(m, PACKAGE_ROOT, PACKAGE) if isinstance(m, str) and not m.endswith(".py") else Path(m)
        if path is None or not path.is_file():
            raise ValueError(f"{m!r} is neither a source file nor a module of {PACKAGE}")
        todo.append(path.resolve())
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        root, package = package_of(path)
        if root.name == package:
            todo += [_module_path(n, root, package) for n in _imported(path, root, package)]
            if path.name == "__init__.py" and DISCOVERING in path.read_text(encoding="utf-8"):
                todo += sorted(p.resolve() for p in path.parent.glob("*.py"))  # it imports every module it holds
    return sorted(seen)


@lru_cache(maxsize=1)
def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def code_version(modules: Iterable[ModuleType | str | Path]) -> str:
    """Hash of what the import closure of ``modules`` does, and of the numerical libraries' versions."""
    digest = hashlib.sha256(json.dumps(library_versions(), sort_keys=True).encode())
    for path in import_closure(modules):
        root, _ = package_of(path)
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(file_digest(path, source_code).encode())
    return digest.hexdigest()[:16]


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot hash config value of type {type(value).__name__}: {value!r}")


def run_key(what: str, config: Any, inputs: dict[str, str] | None = None, code: Iterable = ()) -> str:
    """The cache key of a result: hash of its name, config, input versions and code version."""
    return _key(what, config, inputs, code_version(code))


def _key(what: str, config: Any, inputs: dict[str, str] | None, version: str) -> str:
    blob = json.dumps({"what": what, "config": _jsonable(config), "inputs": inputs or {}, "code": version},
                      sort_keys=True)
    return f"{what}-{hashlib.sha256(blob.encode()).hexdigest()[:20]}"


def set_modes(path: Path) -> None:
    """Normal modes under the umask (temporary files are made 0600/0700)."""
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.chmod(p, DIR_MODE if p.is_dir() else FILE_MODE)


def _read_at(directory: int, name: str) -> bytes:
    with os.fdopen(os.open(name, os.O_RDONLY, dir_fd=directory), "rb") as fh:
        return fh.read()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunCache:
    """A folder of entries ``<key>/{result.pkl, meta.json}``; ``meta.json`` stores the config and
    the result file's SHA-256."""

    STALE_SECONDS = 3600  # a temporary folder of unknown owner is stale after this long

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else cache_dir()

    def path(self, key: str) -> Path:
        return self.root / key

    def has(self, key: str) -> bool:
        return (self.path(key) / RESULT).is_file()

    def check_writable(self) -> None:
        """Raise ``CacheNotWritableError`` naming the folder unless an entry can be stored in it."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".probe.{os.getpid()}.{uuid.uuid4().hex}"
            probe.mkdir()
            probe.rmdir()
        except OSError as err:
            if err.errno in FULL:  # writable, only full: the run goes on, uncached (``store``)
                return
            raise CacheNotWritableError(
                f"the run cache {self.root} cannot be written ({err.strerror or err}); make it writable or set "
                f"{CACHE_DIR_VARIABLE} to a writable folder") from err

    def load(self, key: str) -> Any:
        """The stored result; ``ValueError`` saying what is wrong when the entry fails its check, and
        ``FileNotFoundError`` when there is no entry (or it was moved away while being read)."""
        folder = self.path(key)
        try:
            directory = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        except NotADirectoryError:
            raise ValueError(f"{folder} is a file, not an entry folder") from None  # FileNotFoundError: no entry
        try:  # both files through one open folder: consistent even if it is renamed meanwhile
            meta = json.loads(_read_at(directory, META))
            data = _read_at(directory, RESULT)
        except FileNotFoundError:
            raise ValueError(f"{folder} lacks {META} or {RESULT}") from None
        except (OSError, ValueError) as err:
            raise ValueError(f"unreadable ({type(err).__name__}: {err})") from err
        finally:
            os.close(directory)
        found = hashlib.sha256(data).hexdigest()
        if meta.get("checksum") != found:
            raise ValueError(f"{RESULT} has SHA-256 {found[:16]}..., its {META} says {str(meta.get('checksum'))[:16]}...")
        try:
            return pickle.loads(data)
        except Exception as err:  # noqa: BLE001 - any unpickling failure means the entry is unusable
            raise ValueError(f"{RESULT} does not unpickle ({type(err).__name__}: {err})") from err

    def set_aside(self, folder: Path, why: str) -> Path:
        """Move a corrupt entry to ``<cache>/.corrupt/`` (kept for inspection) and warn with its path."""
        aside = self.root / ".corrupt" / f"{folder.name}.{time.strftime('%Y%m%d-%H%M%S')}.{uuid.uuid4().hex[:6]}"
        if not folder.exists():  # another process moved it first
            return aside
        aside.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(folder, aside)
        except FileNotFoundError:
            return aside
        warnings.warn(f"corrupt run-cache entry {folder}: {why}; moved to {aside} and recomputed",
                      CorruptEntryWarning, stacklevel=3)
        return aside

    def remove_stale_parts(self) -> None:
        """Remove temporary folders left by killed runs (their process is gone)."""
        for part in self.root.glob(".*.part"):
            fields = part.name.split(".")
            pid = int(fields[-3]) if len(fields) >= 4 and fields[-3].isdigit() else None
            try:
                stale = (not _pid_alive(pid)) if pid is not None else \
                    time.time() - part.stat().st_mtime > self.STALE_SECONDS
            except FileNotFoundError:
                continue
            if stale and pid != os.getpid():
                shutil.rmtree(part, ignore_errors=True)

    def store(self, key: str, result: Any, meta: dict | None = None) -> bool:
        """Write the entry atomically; False (with a ``CacheFullWarning``) when the disk is full."""
        self.check_writable()
        self.remove_stale_parts()
        tmp = self.root / f".{key}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part"
        data = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            tmp.mkdir()
            (tmp / RESULT).write_bytes(data)
            meta = {**(meta or {}), "checksum": hashlib.sha256(data).hexdigest()}
            (tmp / META).write_text(json.dumps(meta, indent=2, default=str))
            set_modes(tmp)
            self._publish(tmp, key)
            return True
        except OSError as err:
            if err.errno not in FULL:
                raise
            free = shutil.disk_usage(self.root).free
            warnings.warn(f"run-cache entry {key} not stored: {err.strerror} in {self.root} ({free / 2**20:,.0f} MiB "
                          f"free, {len(data) / 2**20:,.0f} MiB needed); the result is returned and will be "
                          f"computed again next time", CacheFullWarning, stacklevel=3)
            return False
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def _publish(self, tmp: Path, key: str) -> None:
        final = self.path(key)
        for _ in range(5):
            try:
                os.rename(tmp, final)  # atomic; fails if another process published first
                return
            except OSError as err:
                if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
            try:
                self.load(key)
                return  # a concurrent run finished first: its entry is equally valid
            except FileNotFoundError:  # gone again meanwhile: try once more
                continue
            except ValueError as err:
                self.set_aside(final, f"{err}; replaced by a fresh result")
        raise OSError(f"could not publish run-cache entry {final}: other processes keep replacing it")

    def get_or_compute(self, key: str, compute: Callable[[], Any], meta: dict | None = None) -> Any:
        folder = self.path(key)
        try:
            present = folder.exists()
        except PermissionError as err:
            raise CacheNotWritableError(f"the run cache {self.root} cannot be read ({err.strerror}); set "
                                        f"{CACHE_DIR_VARIABLE} to a folder this user can read and write") from err
        if present:
            try:
                return self.load(key)
            except FileNotFoundError:  # moved away meanwhile (set aside by another process)
                pass
            except ValueError as err:
                self.set_aside(folder, str(err))
        self.check_writable()  # before the work, not after
        result = compute()
        self.store(key, result, meta)
        return result


def cached(what: str, config: Any, compute: Callable[[], Any], inputs: dict[str, str] | None = None,
           code: Iterable = (), cache: RunCache | None = None) -> Any:
    """Return the cached result for (what, config, inputs, code), computing and storing it if absent.

    ``code``: the modules that compute the result; their import closure is hashed."""
    version = code_version(code)
    key = _key(what, config, inputs, version)
    meta = {"what": what, "config": _jsonable(config), "inputs": inputs or {}, "code_version": version}
    return (cache or RunCache()).get_or_compute(key, compute, meta)


def has(what: str, config: Any, inputs: dict[str, str] | None = None, code: Iterable = (),
        cache: RunCache | None = None) -> bool:
    """Whether ``cached`` would find (what, config, inputs, code) stored, without computing it."""
    return (cache or RunCache()).has(run_key(what, config, inputs, code))
