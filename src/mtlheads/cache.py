"""Run cache: results and trained models stored under a hash of everything that determines them.

A key is the SHA-256 of (what, config, data version, code version of the modules used). The
code version is the hash of those modules' source files, so editing a module used by a result
invalidates it. Entries are written to a temporary folder and renamed into place, so an
interrupted run leaves no half-written entry.

    result = cached("stl", config, compute=lambda: train(config), modules=[train_module])
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import shutil
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterable

CACHE_DIR_VARIABLE = "MTLHEADS_CACHE_DIR"


def cache_dir() -> Path:
    """``MTLHEADS_CACHE_DIR`` or ``<project>/.cache/runs``."""
    if os.environ.get(CACHE_DIR_VARIABLE):
        return Path(os.environ[CACHE_DIR_VARIABLE])
    return Path(__file__).resolve().parents[2] / ".cache" / "runs"


_MODULE_SOURCE_HASHES: dict[str, bytes] = {}


def _file_hash(path: str) -> bytes:
    return hashlib.sha256(Path(path).read_bytes()).digest()


def code_version(modules: Iterable[ModuleType | str | Path]) -> str:
    """Hash of the source text of the given modules (or files), in a stable order.

    An imported module's source is hashed once per process, so a run keeps the code version
    of the code it imported even if the file is edited while it runs; a path is read each time.
    """
    hashes = {}
    for m in modules:
        if isinstance(m, ModuleType):
            path = str(Path(m.__file__).resolve())
            hashes[path] = _MODULE_SOURCE_HASHES.setdefault(path, _file_hash(path))
        else:
            path = str(Path(m).resolve())
            hashes[path] = _file_hash(path)
    digest = hashlib.sha256()
    for path in sorted(hashes):
        digest.update(Path(path).name.encode())
        digest.update(hashes[path])
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


def run_key(what: str, config: Any, data_version: str = "", modules: Iterable = ()) -> str:
    """The cache key of a result: hash of its name, config, data version and code version."""
    blob = json.dumps(
        {"what": what, "config": _jsonable(config), "data": data_version, "code": code_version(modules)},
        sort_keys=True,
    )
    return f"{what}-{hashlib.sha256(blob.encode()).hexdigest()[:20]}"


class RunCache:
    """A folder of entries ``<key>/{result.pkl, meta.json}``; ``meta.json`` stores the config."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else cache_dir()

    def path(self, key: str) -> Path:
        return self.root / key

    def has(self, key: str) -> bool:
        return (self.path(key) / "result.pkl").is_file()

    def load(self, key: str) -> Any:
        with open(self.path(key) / "result.pkl", "rb") as fh:
            return pickle.load(fh)

    def store(self, key: str, result: Any, meta: dict | None = None) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{key}.", suffix=".part"))
        try:
            with open(tmp / "result.pkl", "wb") as fh:
                pickle.dump(result, fh, protocol=pickle.HIGHEST_PROTOCOL)
            (tmp / "meta.json").write_text(json.dumps(meta or {}, indent=2, default=str))
            final = self.path(key)
            if final.exists():  # a concurrent run finished first: its entry is equally valid
                shutil.rmtree(tmp)
                return
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def get_or_compute(self, key: str, compute: Callable[[], Any], meta: dict | None = None) -> Any:
        if self.has(key):
            return self.load(key)
        result = compute()
        self.store(key, result, meta)
        return result


def cached(what: str, config: Any, compute: Callable[[], Any], data_version: str = "",
           modules: Iterable = (), cache: RunCache | None = None) -> Any:
    """Return the cached result for (what, config, data, code), computing and storing it if absent."""
    modules = list(modules)
    key = run_key(what, config, data_version, modules)
    meta = {"what": what, "config": _jsonable(config), "data_version": data_version,
            "code_version": code_version(modules)}
    return (cache or RunCache()).get_or_compute(key, compute, meta)
