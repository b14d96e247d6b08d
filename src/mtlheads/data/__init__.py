"""Data: the source registry and fetcher, the readers, and the corpora built from them."""

from mtlheads.data.sources import SOURCES, MissingSourceError, fetch, fetch_all, verify

__all__ = ["SOURCES", "MissingSourceError", "fetch", "fetch_all", "verify"]
