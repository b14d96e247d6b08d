"""bench/gpu_check.py: said and exit 0 without CUDA; every piece runs in its CPU rehearsal."""

import importlib.util
import json
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_cuda_it_says_so_and_exits_0(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert load_script().main([]) == 0
    assert "no CUDA device" in capsys.readouterr().out


def test_the_cpu_rehearsal_runs_every_piece_and_reports_each(tmp_path):
    out = tmp_path / "report.json"
    assert load_script().main(["--rehearse", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    pieces = report["pieces"]
    assert list(pieces) == ["STL POS", "MTL-5 joint", "chapter 6 model", "chapter 7 model",
                            "probes (STL POS model)", "CPU/GPU agreement"]
    assert report["failed"] == [] and not any("error" in p or "skipped" in p for p in pieces.values())
    assert pieces["STL POS"]["steps"] > 0 and pieces["MTL-5 joint"]["test"].keys() == {"pos", "ner", "dep", "con", "srl"}
    assert pieces["CPU/GPU agreement"]["agrees"] and pieces["CPU/GPU agreement"]["relative_difference"]["fp32"] == 0.0


def test_a_failing_piece_is_reported_and_fails_the_run(tmp_path, monkeypatch):
    script = load_script()

    def broken(*args):
        raise RuntimeError("planted")

    monkeypatch.setattr(script, "numreason_piece", broken)
    out = tmp_path / "report.json"
    assert script.main(["--rehearse", "--out", str(out)]) == 1
    report = json.loads(out.read_text())
    assert report["failed"] == ["chapter 6 model"] and "planted" in report["pieces"]["chapter 6 model"]["error"]
    assert "agrees" in report["pieces"]["CPU/GPU agreement"]  # the later pieces still ran
