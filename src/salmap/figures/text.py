"""Text in figures whatever its script: the fonts on this machine that can draw it, and a clean
stand-in for the characters none of them has (instead of Matplotlib's boxes and warnings)."""

from __future__ import annotations

from functools import cache

# tried in this order after Matplotlib's own DejaVu Sans, when installed: wide-coverage fonts for
# other scripts (CJK, Arabic, Hebrew, Devanagari, Thai...) and symbols
FALLBACK_FAMILIES = (
    "DejaVu Sans",
    "Noto Sans",
    "Noto Sans CJK JP",
    "Noto Sans CJK SC",
    "Noto Sans CJK KR",
    "Noto Sans Arabic",
    "Noto Sans Hebrew",
    "Noto Sans Devanagari",
    "Noto Sans Thai",
    "Noto Sans Symbols",
    "Noto Sans Symbols2",
    "WenQuanYi Zen Hei",
    "Droid Sans Fallback",
    "Arial Unicode MS",
)
# drawn in place of a character that no installed font has
MISSING = "?"


@cache
def font_families() -> tuple[str, ...]:
    """The families of `FALLBACK_FAMILIES` installed here, in order (Matplotlib falls back from
    one to the next glyph by glyph)."""
    from matplotlib import font_manager

    installed = {entry.name for entry in font_manager.fontManager.ttflist}
    return tuple(family for family in FALLBACK_FAMILIES if family in installed)


@cache
def _covered() -> frozenset[int]:
    """The code points that at least one of `font_families()` can draw."""
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    points: set[int] = set()
    for entry in font_manager.fontManager.ttflist:
        if entry.name in font_families():
            try:
                points.update(FT2Font(entry.fname).get_charmap())
            except (OSError, RuntimeError):
                continue
    return frozenset(points)


def drawable(text: str) -> str:
    """`text` as the installed fonts can draw it: characters none has become `MISSING`, and
    dollar signs are escaped so that Matplotlib does not read them as mathematics."""
    covered = _covered()
    kept = "".join(char if char in "\n\t" or ord(char) in covered else MISSING for char in text)
    return kept.replace("$", r"\$")
