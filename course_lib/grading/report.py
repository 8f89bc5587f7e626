"""Score tables for the terminal, grades.csv and a summary plot for the instructor."""
from __future__ import annotations

import csv
import os
import shutil
import textwrap

from course_lib.grading.course import Course
from course_lib.grading.pipeline import LATE  # (-penalty, 0) in scores() when nbgrader gave one



def question_order(course: Course) -> dict:
    """{assignment: [grade_id, ...]} in the order the source notebooks ask them."""
    import nbformat
    from course_lib.grading.cells import grade_ids_in_order
    order = {}
    for a in course.assignments():
        order[a] = []
        for notebook in course.notebooks(a):
            nb = nbformat.read(course.path("source", a, f"{notebook}.ipynb"), as_version=4)
            order[a] += grade_ids_in_order(nb)
    return order


def _total(cells) -> tuple[float, float]:
    return sum(e for e, _ in cells.values()), sum(m for _, m in cells.values())


def score_table(scores: dict, order: dict | None = None, verbose: bool = False,
                width: int | None = None) -> str:
    """Totals: one row per student, one column per assignment (late-adjusted, "L" marks a
    late penalty, "-" no submission). `verbose`: per assignment, one row per question in
    notebook order and one column per student, in blocks that fit `width` characters."""
    if not scores:
        return "(no grades yet)"
    width = width or shutil.get_terminal_size((100, 24)).columns
    order = order or {}
    assignments = sorted({a for _, a in scores})
    students = sorted({s for s, _ in scores})
    lines = [] if not verbose else _details(scores, assignments, students, order, width)
    labels = {a: a.split("_")[0] if a[:2].isdigit() else a[:10] for a in assignments}
    name_w = max(7, *(len(s) for s in students)) + 2
    lines.append("")
    lines.append("student".ljust(name_w) + "".join(labels[a].rjust(11) for a in assignments))
    for student in students:
        row = student.ljust(name_w)
        for a in assignments:
            cells = scores.get((student, a))
            row += _mark(cells).rjust(11)
        lines.append(row)
    legend = [f"{labels[a]} = {a}" for a in assignments if labels[a] != a]
    lines.append(textwrap.fill("; ".join(legend + ["L: late penalty applied",
                                                   "-: no submission"]), min(width, 80)))
    return "\n".join(lines)


def _mark(cells) -> str:
    if cells is None:
        return "-"
    earned, possible = _total(cells)
    return f"{earned:g}/{possible:g}" + (" L" if cells.get(LATE, (0, 0))[0] < 0 else "")


def _details(scores, assignments, students, order, width) -> list[str]:
    lines = []
    for a in assignments:
        known = {q for (s, aa), cells in scores.items() if aa == a for q in cells}
        questions = [q for q in order.get(a, []) if q in known]
        questions += sorted(known - set(questions))
        q_w = max(len(q) for q in questions) + 2
        col_w = max(7, *(len(s) + 2 for s in students))
        per_block = max(1, (width - q_w) // col_w)
        for i in range(0, len(students), per_block):
            block = students[i:i + per_block]
            lines.append(f"\n{a}")
            lines.append("question".ljust(q_w) + "".join(s.rjust(col_w) for s in block))
            for q in questions:
                lines.append(q.ljust(q_w) + "".join(
                    _cell(scores.get((s, a)), q).rjust(col_w) for s in block))
    return lines


def _cell(cells, question) -> str:
    if cells is None or question not in cells:
        return "-"
    earned, possible = cells[question]
    return f"{earned:g}/{possible:g}" if possible else f"{earned:g}"


def rows(scores: dict):
    for (student, assignment), cells in sorted(scores.items()):
        for question, (earned, possible) in sorted(cells.items()):
            yield {"student": student, "assignment": assignment, "question": question,
                   "score": earned, "max_score": possible}


def export(course: Course, path: str | None = None, exclude=()) -> str:
    """grades.csv (one row per student, assignment and question; a late penalty is the row
    `late_penalty`), grades_by_student.csv (for an LMS) and grades.png."""
    from course_lib.grading.pipeline import scores
    table = {k: v for k, v in scores(course).items() if k[0] not in exclude}
    path = path or course.path("grades.csv")
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, ["student", "assignment", "question", "score", "max_score"])
        writer.writeheader()
        writer.writerows(rows(table))
    students = sorted(course.students() - set(exclude) - course.withdrawn())
    by_student(table, course.assignments(), students,
               os.path.join(os.path.dirname(path), "grades_by_student.csv"))
    plot_totals(table, os.path.splitext(path)[0] + ".png")
    return path


def by_student(table: dict, assignments, students, path: str) -> None:
    """One row per student, one column per assignment (late-adjusted total, 0 when nothing
    was handed in), then Total and Missing (the assignments counted as 0): the shape Canvas's
    and Moodle's gradebook imports take (README: *Exports for an LMS*)."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["Student", *assignments, "Total", "Missing"])
        for student in students:
            totals, missing = [], []
            for a in assignments:
                cells = table.get((student, a))
                if cells is None:
                    missing.append(a)
                totals.append(max(0.0, _total(cells)[0]) if cells else 0.0)
            writer.writerow([student, *(f"{t:g}" for t in totals), f"{sum(totals):g}",
                             " ".join(missing)])


def plot_totals(table: dict, path: str) -> None:
    """One histogram per assignment: how many students scored in each tenth of the points."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    assignments = sorted({a for _, a in table}) or ["(no grades yet)"]
    fig, axes = plt.subplots(len(assignments), 1, figsize=(7, 1.9 * len(assignments) + 0.6),
                             squeeze=False, sharex=True)
    edges = np.linspace(0, 100, 11)
    for ax, a in zip(axes[:, 0], assignments):
        totals = [100 * max(0.0, _total(c)[0]) / max(1e-9, _total(c)[1])
                  for (_, aa), c in table.items() if aa == a]
        counts, _ = np.histogram(totals, bins=edges)
        bars = ax.bar(edges[:-1] + 5, counts, width=9, color="#4C72B0")
        ax.bar_label(bars, [str(n) if n else "" for n in counts], padding=2)
        ax.set_title(f"{a}: {len(totals)} submission(s)", fontsize=10, loc="left")
        ax.set_ylabel("students")
        ax.set_ylim(0, max(1, counts.max()) * 1.3)
    axes[-1, 0].set_xlabel("score (% of the assignment's points, late-adjusted)")
    axes[-1, 0].set_xticks(edges)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
