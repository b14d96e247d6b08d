"""The run cache: keys cover all a result depends on; a bad entry is never served; stores are safe."""

import errno
import multiprocessing
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import textwrap
import warnings
from pathlib import Path

import pytest

from mtlheads import cache


def test_key_depends_on_config_inputs_and_code(tmp_path):
    package = _package(tmp_path, {"__init__.py": "", "mod.py": "x = 1\n"})
    module = package / "mod.py"
    key = lambda config, inputs: cache.run_key("stl", config, inputs, [module])  # noqa: E731
    first = key({"task": "pos", "seed": 1}, {"data": "v1"})
    assert first == key({"seed": 1, "task": "pos"}, {"data": "v1"})  # order-free
    assert first != key({"task": "pos", "seed": 2}, {"data": "v1"})
    assert first != key({"task": "pos", "seed": 1}, {"data": "v2"})
    assert first != key({"task": "pos", "seed": 1}, {"data": "v1", "encoder": "e"})
    module.write_text("x = 2\n")
    assert first != key({"task": "pos", "seed": 1}, {"data": "v1"})


def _package(tmp_path, files: dict[str, str]):
    package = tmp_path / "pkg"
    for name, text in files.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(textwrap.dedent(text))
    return package


PACKAGE = {
    "__init__.py": '"""The package."""\n',
    "run.py": '''\
        """Trains."""
        from pkg import helpers
        from .data import readers

        def go():
            from pkg.data.scoring import score  # imported inside a function: still a dependency
            return helpers.f() + readers.g() + score()
        ''',
    "helpers.py": '"""Helpers."""\n\ndef f():\n    """One."""\n    return 1  # a comment\n',
    "data/__init__.py": "",
    "data/readers.py": "def g():\n    return 2\n",
    "data/scoring.py": "def score():\n    return 3\n",
    "viz.py": '"""Figures: not imported by run.py."""\n\ndef plot():\n    return 0\n',
}


def test_code_version_is_the_import_closure_and_ignores_docstrings_and_comments(tmp_path):
    package = _package(tmp_path, PACKAGE)
    closure = {p.relative_to(package).as_posix() for p in cache.import_closure([package / "run.py"])}
    assert closure == {"__init__.py", "run.py", "helpers.py", "data/__init__.py", "data/readers.py",
                       "data/scoring.py"}
    version = cache.code_version([package / "run.py"])
    # editing any module the run depends on, directly or not, changes its version
    for name, old, new in [("helpers.py", "return 1", "return 10"), ("data/readers.py", "2", "20"),
                           ("data/scoring.py", "3", "30"), ("run.py", "+ score()", "- score()")]:
        path = package / name
        text = path.read_text()
        path.write_text(text.replace(old, new))
        assert cache.code_version([package / "run.py"]) != version, name
        path.write_text(text)
    assert cache.code_version([package / "run.py"]) == version
    # a docstring or comment changes nothing; nor does any change to a module it does not import
    helpers = package / "helpers.py"
    helpers.write_text(helpers.read_text().replace('"""One."""', '"""One, said at length."""')
                       .replace("# a comment", "# another comment"))
    (package / "viz.py").write_text('"""Figures."""\n\ndef plot():\n    return 42\n')
    assert cache.code_version([package / "run.py"]) == version


def test_the_library_closures_include_the_modules_the_issue_found_missing():
    from mtlheads import experiments, numreason, readersum, train

    def names(module):
        return {p.relative_to(cache.PACKAGE_ROOT).as_posix() for p in cache.import_closure([module])}

    assert {"data/stats.py", "tasks/con.py", "data/readers.py", "dropout.py", "checks.py"} <= names(train)
    assert {"experiments.py", "probes.py", "data/stats.py", "train.py"} <= names(experiments)
    assert {"metrics.py", "data/numeric.py", "data/squad.py", "heads.py"} <= names(numreason)
    assert {"data/scitldr.py", "data/squad.py", "heads.py", "multihead.py"} <= names(readersum)
    assert "viz.py" not in names(train)
    # the tasks package finds its modules at import time: every one of them is in the closure
    assert {f"tasks/{p.name}" for p in (cache.PACKAGE_ROOT / "tasks").glob("*.py")} <= names(train)


def test_cached_computes_once_and_stores_config_and_checksum(tmp_path):
    store = cache.RunCache(tmp_path)
    calls = []
    compute = lambda: calls.append(1) or {"score": 0.5}  # noqa: E731
    first = cache.cached("run", {"a": 1}, compute, cache=store)
    second = cache.cached("run", {"a": 1}, compute, cache=store)
    assert first == second == {"score": 0.5} and len(calls) == 1
    (entry,) = [p for p in tmp_path.iterdir()]
    meta = (entry / "meta.json").read_text()
    assert '"a": 1' in meta and '"checksum"' in meta


def _entry(tmp_path):
    store = cache.RunCache(tmp_path)
    store.store("k", {"weights": list(range(1000))})
    return store, tmp_path / "k"


@pytest.mark.parametrize("damage", ["truncated", "no result file", "bad meta", "bytes changed"])
def test_a_corrupt_entry_is_reported_moved_aside_and_recomputed(tmp_path, damage):
    store, entry = _entry(tmp_path)
    result = entry / "result.pkl"
    if damage == "truncated":
        result.write_bytes(result.read_bytes()[:100])
    elif damage == "no result file":
        result.unlink()
    elif damage == "bad meta":
        (entry / "meta.json").write_text("{")
    else:  # same length, different content: only the checksum can tell
        data = bytearray(result.read_bytes())
        data[-20] ^= 1
        result.write_bytes(bytes(data))
    with pytest.warns(cache.CorruptEntryWarning, match=f"corrupt run-cache entry {entry}") as caught:
        value = store.get_or_compute("k", lambda: "fresh")
    assert value == "fresh"
    assert store.load("k") == "fresh"  # the fresh result took its place
    (aside,) = (tmp_path / ".corrupt").iterdir()
    assert aside.name.startswith("k.") and str(aside) in str(caught[0].message)


def test_two_processes_storing_the_same_entry_never_crash(tmp_path):
    context = multiprocessing.get_context("spawn")
    with context.Pool(4) as pool:
        pool.starmap(_store_many, [(str(tmp_path), i) for i in range(4)])
    store = cache.RunCache(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # whatever is there now is whole: served, not set aside
        assert store.get_or_compute("same", lambda: "value") == "value"
    assert not list(tmp_path.glob(".*.part")) and not (tmp_path / ".corrupt").exists()


def _store_many(root, worker):
    store = cache.RunCache(root)
    for i in range(100):
        store.store("same", "value")
        if worker == 0:  # take the entry away again and again: the check-then-rename window at its widest
            try:
                os.rename(store.path("same"), os.path.join(root, f"gone-{i}"))
            except OSError:
                pass


def test_publishing_over_an_entry_that_appeared_meanwhile_keeps_the_valid_one(tmp_path):
    store = cache.RunCache(tmp_path)
    store.store("k", "first")
    store.store("k", "second")  # the final folder exists and is whole: the first stays
    assert store.load("k") == "first"


def test_stale_part_folders_of_dead_processes_are_removed_on_the_next_store(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = tmp_path / f".k.{dead}.abcd1234.part"
    live = tmp_path / f".k.{os.getppid()}.abcd1234.part"  # a live process's store in progress
    for folder in (stale, live):
        folder.mkdir(parents=True)
        (folder / "result.pkl").write_bytes(b"half")
    cache.RunCache(tmp_path).store("other", 1)
    assert not stale.exists() and live.exists()


@pytest.fixture
def open_tmp():
    """A temporary folder every user can enter (pytest's are private to their owner)."""
    folder = tempfile.mkdtemp()
    os.chmod(folder, 0o755)
    yield Path(folder)
    shutil.rmtree(folder, ignore_errors=True)


def test_a_read_only_cache_is_detected_before_the_work(open_tmp):
    folder = open_tmp / "ro"
    folder.mkdir()
    os.chmod(folder, 0o555)
    script = textwrap.dedent(f"""
        import os, sys
        from mtlheads import cache
        cache.library_versions()  # read as root: the ordinary user cannot read this Python's metadata
        if os.geteuid() == 0:
            os.setuid(65534)  # root writes anywhere: run as an ordinary user (after the imports)
        ran = []
        try:
            cache.cached("run", {{}}, lambda: ran.append(1), cache=cache.RunCache({str(folder)!r}))
        except cache.CacheNotWritableError as err:
            print("refused:", err, "| computed:", bool(ran))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert f"refused: the run cache {folder} cannot be written" in out.stdout, out.stdout + out.stderr
    assert cache.CACHE_DIR_VARIABLE in out.stdout and "| computed: False" in out.stdout


def test_entries_get_normal_modes(tmp_path):
    store, entry = _entry(tmp_path)
    assert entry.stat().st_mode & 0o777 == cache.DIR_MODE
    assert (entry / "result.pkl").stat().st_mode & 0o777 == cache.FILE_MODE
    assert cache.FILE_MODE == 0o666 & ~_umask() and cache.FILE_MODE & 0o044  # readable by others (umask 022)


def _umask():
    old = os.umask(0)
    os.umask(old)
    return old


def test_interrupted_store_leaves_no_entry(tmp_path, monkeypatch):
    store = cache.RunCache(tmp_path)

    def dumps_then_fail(obj, protocol=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(cache.pickle, "dumps", dumps_then_fail)
    with pytest.raises(KeyboardInterrupt):
        store.store("k", {"big": "result"})
    assert not store.has("k")
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_returns_the_result_uncached_warns_and_leaves_no_part(tmp_path, monkeypatch):
    store = cache.RunCache(tmp_path)
    calls = []
    compute = lambda: calls.append(1) or {"weights": list(range(1000))}  # noqa: E731

    def full(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.warns(cache.CacheFullWarning, match=r"not stored: No space left on device in .* MiB needed"):
        first = cache.cached("run", {"a": 1}, compute, cache=store)
    assert first == {"weights": list(range(1000))}
    assert list(tmp_path.iterdir()) == []  # neither an entry nor a temporary folder
    with pytest.warns(cache.CacheFullWarning):
        cache.cached("run", {"a": 1}, compute, cache=store)
    assert len(calls) == 2  # not cached, so computed again
    monkeypatch.undo()
    cache.cached("run", {"a": 1}, compute, cache=store)  # space again: stored ...
    assert cache.cached("run", {"a": 1}, compute, cache=store) == first and len(calls) == 3  # ... and served


def test_other_write_errors_are_raised_not_swallowed(tmp_path, monkeypatch):
    def broken(self, data):
        raise OSError(errno.EIO, os.strerror(errno.EIO), str(self))

    monkeypatch.setattr(Path, "write_bytes", broken)
    with pytest.raises(OSError, match="Input/output error"):
        cache.RunCache(tmp_path).store("k", {"a": 1})
    assert list(tmp_path.iterdir()) == []


def test_unhashable_config_value_is_named():
    with pytest.raises(TypeError, match="cannot hash config value of type object"):
        cache.run_key("x", {"a": object()})


def test_pickle_round_trip_of_a_stored_entry(tmp_path):
    store, entry = _entry(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert store.load("k") == pickle.loads((entry / "result.pkl").read_bytes())
