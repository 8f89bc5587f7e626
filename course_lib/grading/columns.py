"""Padding by the columns a terminal draws, not by code points: a student id like 王芳_10004
takes 10 columns in 8 characters, and a decomposed é (e + U+0301) one column in two."""
from __future__ import annotations

import unicodedata


def char_width(ch: str) -> int:
    """Terminal columns of one code point: 2 for East Asian wide and fullwidth, 0 for
    combining and enclosing marks and invisible format characters (a zero-width joiner), 1
    otherwise."""
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def width(text: str) -> int:
    """Terminal columns of `text` (one line)."""
    return sum(char_width(ch) for ch in text)


def ljust(text: str, columns: int) -> str:
    """`text` padded on the right with spaces to `columns` terminal columns."""
    return text + " " * max(0, columns - width(text))


def rjust(text: str, columns: int) -> str:
    """`text` padded on the left with spaces to `columns` terminal columns."""
    return " " * max(0, columns - width(text)) + text
