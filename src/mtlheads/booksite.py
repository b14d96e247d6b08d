"""A Sphinx extension for the book's HTML (``_config.yml`` loads it): two fixes that let a page
load without a JavaScript error in a reader's browser (``tests/browser`` checks it).

- Each script is included once: sphinx-thebe adds its inline configuration (``const
  THEBE_JS_URL = ...``) twice under Jupyter Book 1.x, and the second ``const`` throws.
- The theme's colour mode defaults to ``light``: with none stored yet (a first visit), the
  pydata theme logs "Got invalid theme mode" as an error.
"""

from __future__ import annotations


def _script_key(script) -> tuple:
    attributes = getattr(script, "attributes", {}) or {}
    filename = getattr(script, "filename", script) or ""  # an inline script's: None or "" (both are seen)
    return str(filename), tuple(sorted((k, str(v)) for k, v in attributes.items()))


def unique_scripts(scripts: list) -> list:
    """``scripts`` without repeats (the same file or inline body with the same attributes), in order."""
    seen, kept = set(), []
    for script in scripts:
        key = _script_key(script)
        if key not in seen:
            seen.add(key)
            kept.append(script)
    return kept


def _on_page(app, pagename, templatename, context, doctree) -> None:
    if "script_files" in context:
        context["script_files"][:] = unique_scripts(context["script_files"])
    if not context.get("default_mode"):
        context["default_mode"] = "light"


def setup(app):
    app.connect("html-page-context", _on_page, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
