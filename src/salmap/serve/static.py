"""The page's own files (HTML, JavaScript, CSS), shipped inside the package and read once.

Only the files listed here are served, so a request never reaches the file system."""

from __future__ import annotations

from functools import cache
from importlib import resources

ASSETS = ("index.html", "app.js", "style.css", "icon.svg")


@cache
def _read(name: str) -> bytes:
    return resources.files("salmap.serve").joinpath("static", name).read_bytes()


def asset(name: str) -> bytes | None:
    """The content of the page file `name`, or None when there is no such file."""
    return _read(name) if name in ASSETS else None
