"""Executing the book: every chapter in ``_toc.yml`` run by papermill at a profile, then glue helpers.

Executed copies go to ``_build/exec/`` (build output, beside copies of ``_config.yml``,
``_toc.yml`` and the book's text files), from where Jupyter Book renders ``_build/html``.
"""

from __future__ import annotations

import ast
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mtlheads import profiles

ROOT = Path(__file__).resolve().parents[2]
BUILD_SOURCE = ROOT / "_build" / "exec"


def toc_files(toc: Path = ROOT / "_toc.yml") -> list[str]:
    """Every file the table of contents names (root first), as written there, without suffix."""
    spec = yaml.safe_load(toc.read_text())
    files = [spec["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))
            for part in entry.get("parts", []):
                walk(part.get("chapters"))

    walk(spec.get("chapters"))
    for part in spec.get("parts", []):
        walk(part.get("chapters"))
    return files


def chapter_notebooks(toc: Path = ROOT / "_toc.yml") -> list[Path]:
    """The notebooks among the table of contents' files, in order."""
    return [ROOT / f"{f}.ipynb" for f in toc_files(toc) if (ROOT / f"{f}.ipynb").is_file()]


def execute_chapter(notebook: Path, output: Path, profile: str, **overrides: Any) -> float:
    """Run one chapter with papermill at ``profile``; returns the seconds it took.

    The parameters injected by papermill are tagged ``remove-cell`` so the book hides them.
    """
    import papermill

    knobs = profiles.load(profile, **overrides)
    declared = papermill.inspect_notebook(str(notebook))  # pass only what the chapter declares
    parameters = {k: v for k, v in knobs.items() if k in declared}
    output.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    papermill.execute_notebook(str(notebook), str(output), parameters=parameters, kernel_name="python3",
                               cwd=str(notebook.parent), progress_bar=False)
    seconds = time.perf_counter() - start
    nb = json.loads(output.read_text())
    for cell in nb["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
    output.write_text(json.dumps(nb, indent=1))
    return seconds


def execute_book(profile: str = "default", out: Path = BUILD_SOURCE) -> dict[str, float]:
    """Execute every chapter into ``out`` and copy the book's other sources beside them."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(ROOT / name, out / name)
    (out / "book").mkdir(exist_ok=True)
    for path in (ROOT / "book").iterdir():
        if path.suffix in {".md", ".bib", ".png"}:
            shutil.copy2(path, out / "book" / path.name)
    timings = {}
    for notebook in chapter_notebooks():
        relative = notebook.relative_to(ROOT)
        print(f"executing {relative} at profile {profile} ...", flush=True)
        timings[str(relative)] = execute_chapter(notebook, out / relative, profile)
        print(f"  {relative}: {timings[str(relative)]:.0f} s", flush=True)
    print(f"all chapters: {sum(timings.values()):.0f} s", flush=True)
    return timings


def plain(value: Any) -> Any:
    """A value as a Python built-in, so that its glued text reads back with ``ast.literal_eval``."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def glue(name: str, value: Any) -> Any:
    """``myst_nb.glue`` without display, of a plain Python value; returns the value."""
    from myst_nb import glue as myst_glue

    value = plain(value)
    myst_glue(name, value, display=False)
    return value


def read_glue(notebook: Path) -> dict[str, Any]:
    """The values glued in an executed notebook, read back from their text/plain form."""
    values = {}
    for cell in json.loads(Path(notebook).read_text())["cells"]:
        for output in cell.get("outputs", []):
            meta = output.get("metadata", {}).get("scrapbook")
            if not meta:
                continue
            text = output["data"][meta["mime_prefix"] + "text/plain"]
            text = "".join(text) if isinstance(text, list) else text
            try:
                values[meta["name"]] = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                values[meta["name"]] = text
    return values
