"""Score tables for the terminal, grades.csv and a summary plot for the instructor."""
from __future__ import annotations

import csv
import os

from course_lib.grading.course import Course


def score_table(scores: dict) -> str:
    """One row per student and assignment, one column per question: 'earned/possible'."""
    if not scores:
        return "(no grades yet)"
    lines = []
    for assignment in sorted({a for _, a in scores}):
        rows = {s: cells for (s, a), cells in sorted(scores.items()) if a == assignment}
        questions = sorted({q for cells in rows.values() for q in cells})
        width = max(len(s) for s in rows) + 2
        lines.append(f"\n{assignment}")
        lines.append("student".ljust(width) + "total".rjust(9) + "  " +
                     "  ".join(_short(q) for q in questions))
        for student, cells in rows.items():
            earned = sum(cells[q][0] for q in cells)
            possible = sum(cells[q][1] for q in cells)
            marks = "  ".join(_mark(cells.get(q)).center(len(_short(q))) for q in questions)
            lines.append(student.ljust(width) + f"{earned:g}/{possible:g}".rjust(9) + "  " + marks)
    return "\n".join(lines)


def _short(question: str) -> str:
    return question.removeprefix("test_")


def _mark(cell) -> str:
    if cell is None:
        return "-"
    earned, possible = cell
    return f"{earned:g}/{possible:g}"


def rows(scores: dict):
    for (student, assignment), cells in sorted(scores.items()):
        for question, (earned, possible) in sorted(cells.items()):
            yield {"student": student, "assignment": assignment, "question": question,
                   "score": earned, "max_score": possible}


def export(course: Course, path: str | None = None) -> str:
    """grades.csv (one row per student, assignment and question) and grades.png."""
    from course_lib.grading.pipeline import scores
    table = scores(course)
    path = path or course.path("grades.csv")
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, ["student", "assignment", "question", "score", "max_score"])
        writer.writeheader()
        writer.writerows(rows(table))
    plot_totals(table, os.path.splitext(path)[0] + ".png")
    return path


def plot_totals(table: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    assignments = sorted({a for _, a in table})
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for i, a in enumerate(assignments):
        totals = [100 * sum(s for s, _ in c.values()) / max(1e-9, sum(m for _, m in c.values()))
                  for (_, aa), c in table.items() if aa == a]
        ax.scatter([i] * len(totals), totals, alpha=0.7)
    ax.set_xticks(range(len(assignments)), assignments, rotation=15)
    ax.set_ylabel("score (%)")
    ax.set_ylim(-5, 105)
    ax.set_title("Scores per assignment")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
