
import pytest

from mtlheads import cache


def test_key_depends_on_config_data_and_code(tmp_path):
    module = tmp_path / "mod.py"
    module.write_text("x = 1\n")
    key = cache.run_key("stl", {"task": "pos", "seed": 1}, "data1", [module])
    assert key == cache.run_key("stl", {"seed": 1, "task": "pos"}, "data1", [module])  # order-free
    assert key != cache.run_key("stl", {"task": "pos", "seed": 2}, "data1", [module])
    assert key != cache.run_key("stl", {"task": "pos", "seed": 1}, "data2", [module])
    module.write_text("x = 2\n")
    assert key != cache.run_key("stl", {"task": "pos", "seed": 1}, "data1", [module])


def test_cached_computes_once_and_stores_config(tmp_path):
    store = cache.RunCache(tmp_path)
    calls = []
    compute = lambda: calls.append(1) or {"score": 0.5}
    first = cache.cached("run", {"a": 1}, compute, cache=store)
    second = cache.cached("run", {"a": 1}, compute, cache=store)
    assert first == second == {"score": 0.5} and len(calls) == 1
    (entry,) = [p for p in tmp_path.iterdir()]
    assert '"a": 1' in (entry / "meta.json").read_text()


def test_interrupted_store_leaves_no_entry(tmp_path, monkeypatch):
    store = cache.RunCache(tmp_path)

    def dump_then_fail(obj, fh, protocol=None):
        fh.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(cache.pickle, "dump", dump_then_fail)
    with pytest.raises(KeyboardInterrupt):
        store.store("k", {"big": "result"})
    assert not store.has("k")
    assert list(tmp_path.iterdir()) == []


def test_unhashable_config_value_is_named():
    with pytest.raises(TypeError, match="cannot hash config value of type object"):
        cache.run_key("x", {"a": object()})
