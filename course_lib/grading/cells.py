"""A notebook cell's nbgrader identity, read from a student's file: which is hostile input.

nbgrader itself trusts cell metadata; a submitted notebook can hold any JSON there. Everything
the grader reads about a cell goes through here: malformed identities are reported, per cell,
as reasons the student can act on, instead of tracebacks that stop a whole class.
"""
from __future__ import annotations

import numbers

from course_lib.channel.wire import SAFE_ID


def grade_id(cell) -> str | None:
    """The cell's grade_id if it has a well-formed one, else None."""
    meta = cell.get("metadata", {}) if isinstance(cell, dict) else {}
    nbgrader = meta.get("nbgrader") if isinstance(meta, dict) else None
    gid = nbgrader.get("grade_id") if isinstance(nbgrader, dict) else None
    return gid if isinstance(gid, str) and SAFE_ID.match(gid) else None


def grade_ids(nb) -> set[str]:
    return {gid for gid in map(grade_id, nb.cells) if gid}


def is_test(cell) -> bool:
    """An autograded test cell (graded code that is not a solution)."""
    nbgrader = cell.metadata.get("nbgrader", {})
    return (isinstance(nbgrader, dict) and nbgrader.get("grade") is True
            and not nbgrader.get("solution") and cell.cell_type == "code")


def repair(nb, expected_types: dict[str, str] | None = None) -> list[str]:
    """Make a submitted notebook safe to grade; one sentence per cell that had to change.

    Malformed nbgrader metadata is dropped (the cell becomes an ordinary cell: a test cell is
    then restored from the gradebook), as is an identity that claims another kind of cell than
    the course's (`expected_types`: grade_id -> "code"/"markdown"); text that is not valid
    Unicode (a lone surrogate) is replaced by U+FFFD.
    """
    notes = []
    for index, cell in enumerate(nb.cells):
        where = f"cell {index + 1}"
        if not isinstance(cell.get("source"), str):
            cell["source"] = ""
            notes.append(f"{where} had no text: it was emptied")
        if _not_unicode(cell.source):
            cell.source = cell.source.encode("utf-8", "replace").decode("utf-8")
            notes.append(f"{where} held characters that are not valid Unicode: they were replaced")
        if not isinstance(cell.get("metadata"), dict):
            cell["metadata"] = {}
            notes.append(f"{where} had malformed metadata: it was ignored")
        problem = _identity_problem(cell.metadata.get("nbgrader"), cell.cell_type, expected_types)
        if problem:
            del cell.metadata["nbgrader"]
            notes.append(f"{where} {problem}: it was graded as an ordinary cell")
    return notes


def _not_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _identity_problem(nbgrader, cell_type, expected_types) -> str | None:
    if nbgrader is None:
        return None
    if not isinstance(nbgrader, dict):
        return f"had malformed nbgrader metadata ({type(nbgrader).__name__})"
    gid = nbgrader.get("grade_id")
    if not (isinstance(gid, str) and SAFE_ID.match(gid)):
        return "had a malformed grade_id"
    for flag in ("grade", "solution", "locked", "task"):
        if flag in nbgrader and not isinstance(nbgrader[flag], bool):
            return f"({gid}) had a non-boolean '{flag}'"
    points = nbgrader.get("points")
    if points is not None and (not isinstance(points, numbers.Real) or isinstance(points, bool)
                               or not 0 <= points < 1e6):
        return f"({gid}) had malformed points"
    if expected_types and gid in expected_types and expected_types[gid] != cell_type:
        return f"({gid}) claimed to be the course's {expected_types[gid]} cell {gid}"
    return None


def grade_ids_in_order(nb) -> list[str]:
    """Graded cells' ids in notebook order (the order a score table follows)."""
    return [grade_id(c) for c in nb.cells
            if grade_id(c) and c.metadata.get("nbgrader", {}).get("grade") is True]


def position(order, name) -> int:
    """Where course cell `name` stands in the course's order (unknown: last)."""
    return order.index(name) if name in order else len(order)


def insert_position(nb, order, name) -> int:
    """Where a missing course cell goes: after the nearest earlier course cell still present
    (any kind), or before the nearest later one, or first."""
    present = {grade_id(cell): i for i, cell in enumerate(nb.cells) if grade_id(cell)}
    pos = position(order, name)
    for earlier in reversed(order[:pos]):
        if earlier in present:
            return present[earlier] + 1
    for later in order[pos + 1:]:
        if later in present:
            return present[later]
    return 0
