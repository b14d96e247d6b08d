"""Executing the book: every chapter in ``_toc.yml`` run by papermill at a profile, then glue helpers.

Executed copies go to ``_build/exec/`` (build output, beside copies of ``_config.yml``,
``_toc.yml`` and the book's text files), from where Jupyter Book renders ``_build/html``.
"""

from __future__ import annotations

import ast
import html
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from mtlheads import profiles, verdicts

ROOT = Path(__file__).resolve().parents[2]
BUILD_SOURCE = ROOT / "_build" / "exec"
# Notebook pages of the book that are not chapters: executed after every chapter (the results
# page reads the executed chapters' glue; the explorer reads their cached models), each given
# the folder of the executed chapters as its ``executed`` parameter.
PAGES = ("book/results", "book/explorer")
CLAIM_PREFIX = "claim_"


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
    """The chapters: the notebooks among the table of contents' files, in order, but ``PAGES``."""
    return [ROOT / f"{f}.ipynb" for f in toc_files(toc) if (ROOT / f"{f}.ipynb").is_file() and f not in PAGES]


def page_notebooks(toc: Path = ROOT / "_toc.yml") -> list[Path]:
    """The notebook pages that are not chapters (``PAGES``) the table of contents names, in order."""
    return [ROOT / f"{f}.ipynb" for f in toc_files(toc) if f in PAGES]


def execute_chapter(notebook: Path, output: Path, profile: str, page: dict[str, Any] | None = None,
                    **overrides: Any) -> float:
    """Run one chapter (or book page) with papermill at ``profile``; returns the seconds it took.
    ``page``: parameters of a page that are not profile knobs (the results page's ``executed``).

    The parameters injected by papermill are tagged ``remove-cell`` so the book hides them.
    """
    import papermill

    knobs = profiles.load(profile, **overrides)
    declared = papermill.inspect_notebook(str(notebook))  # pass only what the chapter declares
    parameters = {k: v for k, v in {**knobs, **(page or {})}.items() if k in declared}
    output.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    # run in the output's folder: the tables a chapter writes (``show``) land beside its executed copy
    papermill.execute_notebook(str(notebook), str(output), parameters=parameters, kernel_name="python3",
                               cwd=str(output.parent), progress_bar=False)
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
    for notebook in chapter_notebooks() + page_notebooks():
        relative = notebook.relative_to(ROOT)
        print(f"executing {relative} at profile {profile} ...", flush=True)
        page = {"executed": str(out / "book")} if notebook in page_notebooks() else None
        timings[str(relative)] = execute_chapter(notebook, out / relative, profile, page)
        print(f"  {relative}: {timings[str(relative)]:.0f} s", flush=True)
    print(f"all chapters and pages: {sum(timings.values()):.0f} s", flush=True)
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


def glue_claim(key: str, claim: str, word: str, estimate: float, low: float, high: float, not_met="", met="",
               unit: str = "") -> dict:
    """Glue one tested claim for the results page, as ``claim_<key>``: the ``claim`` in words, the
    verdict rule's ``word``, its ``estimate`` (positive: for the claim) with the 95% interval
    [``low``, ``high``] (``unit``: what they count), and its preconditions, those ``not_met`` and
    those ``met`` (each a list, or one string joined by "; ")."""
    if word not in verdicts.WORDS:
        raise ValueError(f"word must be one of the verdict rule's {verdicts.WORDS}, got {word!r}")
    record = {"claim": claim, "word": word, "estimate": _finite(estimate), "low": _finite(low), "high": _finite(high),
              "not_met": _names(not_met), "met": _names(met), "unit": unit}
    return glue(CLAIM_PREFIX + key, record)


def glue_verdict(key: str, claim: str, verdict: "verdicts.Verdict", unit: str = "") -> dict:
    """``glue_claim`` of a ``verdicts.Verdict``."""
    return glue_claim(key, claim, verdict.word, verdict.estimate, verdict.low, verdict.high, list(verdict.failed),
                      list(verdict.met), unit)


def _names(names) -> list[str]:
    names = names.split("; ") if isinstance(names, str) else list(names)
    return [n for n in names if n and n not in ("nothing", "none")]


def _finite(x) -> float | None:
    return None if x is None or not np.isfinite(float(x)) else round(float(x), 4)


def read_claims(folder: Path, notebooks: list[Path] | None = None) -> list[dict]:
    """Every claim glued by ``glue_claim`` in the executed chapters in ``folder`` (by file name,
    in the order of ``notebooks``, the chapters by default), each with its ``chapter`` (stem) and ``key``."""
    rows = []
    for notebook in notebooks if notebooks is not None else chapter_notebooks():
        executed = Path(folder) / notebook.name
        if not executed.is_file():
            raise FileNotFoundError(f"no executed {notebook.name} in {folder}: execute the chapters first (make book)")
        for name, value in read_glue(executed).items():
            if name.startswith(CLAIM_PREFIX):
                rows.append({"chapter": notebook.stem, "key": name[len(CLAIM_PREFIX):], **value})
    return rows


def show(table: "pd.DataFrame | pd.Series", name: str) -> "pd.DataFrame | pd.Series":
    """Display a table of results, write it as ``<name>.csv`` in the working folder (beside the
    executed notebook: ``execute_chapter`` runs a chapter there; atomically) and link the file
    under the table. Returns the table."""
    from IPython.display import Markdown, display

    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"a table's name must be letters, digits, '_', '.' or '-' (a file name), got {name!r}")
    path = Path.cwd() / f"{name}.csv"
    partial = path.with_name(f".{name}.{os.getpid()}.partial")
    table.to_csv(partial)
    os.replace(partial, path)
    display(table)
    display(Markdown(f"{{download}}`{name}.csv <{name}.csv>`"))
    return table


def chapter_title(notebook: Path) -> str:
    """A notebook's title: its first level-1 heading."""
    for cell in json.loads(Path(notebook).read_text())["cells"]:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    raise ValueError(f"{notebook} has no level-1 heading")


def interval_text(low: float | None, high: float | None) -> str:
    """``[low, high]`` with signs, or "no interval"."""
    return "no interval" if low is None or high is None else f"[{low:+.2f}, {high:+.2f}]"


def claims_table(rows: list[dict], titles: dict[str, str]) -> pd.DataFrame:
    """One row per claim of ``read_claims``: its chapter (``titles``: stem -> title), the claim,
    the verdict, the estimate and interval, and the preconditions' status."""
    out = []
    for row in rows:
        conditions = [f"met: {n}" for n in row["met"]] + [f"NOT MET: {n}" for n in row["not_met"]]
        out.append({"chapter": titles[row["chapter"]], "page": row["chapter"], "key": row["key"], "claim": row["claim"],
                    "verdict": row["word"],
                    "estimate": "n/a" if row["estimate"] is None else f"{row['estimate']:+.2f}",
                    "95% interval": interval_text(row["low"], row["high"]), "unit": row["unit"],
                    "preconditions": "; ".join(conditions) or "none"})
    return pd.DataFrame(out)


def claims_html(table: pd.DataFrame) -> str:
    """``claims_table`` as an HTML table, each row's chapter linking to the chapter's page."""
    head = ["chapter", "claim", "verdict", "estimate", "95% interval", "unit", "preconditions"]
    lines = ['<table class="mh-results">', "<thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead>",
             "<tbody>"]
    for _, row in table.iterrows():
        cells = [f'<a href="{row["page"]}.html">{html.escape(row["chapter"])}</a>']
        cells += [html.escape(str(row[h])) for h in head[1:-1]]
        cells.append("<br>".join(html.escape(c) for c in row["preconditions"].split("; ")))
        lines.append(f'<tr data-verdict="{html.escape(row["verdict"])}">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return "\n".join(lines + ["</tbody></table>"])


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
