"""Score tables for the terminal, grades.csv and a summary plot for the instructor."""
from __future__ import annotations

import csv
import os
import shutil
import textwrap

from nbgrader.plugins import CsvExportPlugin
from traitlets import Unicode, default

from course_lib.grading.columns import ljust, rjust, width as columns
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
    name_w = max(7, *(columns(s) for s in students)) + 2
    lines.append("")
    lines.append(ljust("student", name_w) + "".join(rjust(labels[a], 11) for a in assignments))
    for student in students:
        row = ljust(student, name_w)
        for a in assignments:
            cells = scores.get((student, a))
            row += rjust(_mark(cells), 11)
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
        q_w = max(columns("question"), *(columns(q) for q in questions)) + 2
        col_w = max(7, *(columns(s) + 2 for s in students))
        per_block = max(1, (width - q_w) // col_w)
        for i in range(0, len(students), per_block):
            block = students[i:i + per_block]
            lines.append(f"\n{a}")
            lines.append(ljust("question", q_w) + "".join(rjust(s, col_w) for s in block))
            for q in questions:
                lines.append(ljust(q, q_w) + "".join(
                    rjust(_cell(scores.get((s, a)), q), col_w) for s in block))
    return lines


def _cell(cells, question) -> str:
    if cells is None or question not in cells:
        return "-"
    earned, possible = cells[question]
    return f"{earned:g}/{possible:g}" if possible else f"{earned:g}"


COLUMNS = ["student", "assignment", "question", "max_score", "auto_score", "manual_score",
           "extra_credit", "late_penalty", "score"]
MAX_ROW = "Points Possible"  # Canvas's name for the row of maximum points


def released(course: Course) -> list[str]:
    """Assignments handed out: `course release` put them in the gradebook (source/ may hold
    more, written ahead of the term)."""
    with course.gradebook() as gb:
        known = {a.name for a in gb.assignments}
    return [a for a in course.assignments() if a in known]


def grade_rows(course: Course, exclude=()):
    """One dict per student, released assignment and question (COLUMNS), straight from the
    gradebook: the autograder's score, a grader's manual score and extra credit each in their
    own column, `score` the points that count; a late penalty is a row `late_penalty` of its
    own (negative), so a student's scores add up to the late-adjusted total."""
    from course_lib.grading.pipeline import _was_graded
    out = set(exclude) | course.withdrawn()
    order = question_order(course)
    with course.gradebook() as gb:
        for a in released(course):
            position = {q: i for i, q in enumerate(order.get(a, []))}
            for sub in sorted(gb.find_assignment(a).submissions, key=lambda s: s.student.id):
                if sub.student.id in out or not _was_graded(sub):
                    continue
                grades = sorted((g for nb in sub.notebooks for g in nb.grades),
                                key=lambda g: (position.get(g.name, len(position)), g.name))
                yield from (_grade_row(sub.student.id, a, g) for g in grades)
                penalty = float(sub.late_submission_penalty or 0)
                if penalty > 0:
                    yield {"student": sub.student.id, "assignment": a, "question": LATE,
                           "max_score": 0.0, "auto_score": "", "manual_score": "",
                           "extra_credit": "", "late_penalty": -penalty, "score": -penalty}


def _grade_row(student, assignment, grade) -> dict:
    return {"student": student, "assignment": assignment, "question": grade.name,
            "max_score": float(grade.max_score), "auto_score": _number(grade.auto_score),
            "manual_score": _number(grade.manual_score),
            "extra_credit": _number(grade.extra_credit), "late_penalty": "",
            "score": float(grade.score)}


def _number(value):
    return "" if value is None else float(value)


def totals(rows) -> dict:
    """{(student, assignment): (points that count, maximum)} from grade_rows."""
    out = {}
    for row in rows:
        earned, possible = out.get((row["student"], row["assignment"]), (0.0, 0.0))
        out[(row["student"], row["assignment"])] = (earned + row["score"],
                                                   possible + row["max_score"])
    return {k: (max(0.0, e), m) for k, (e, m) in out.items()}


def max_points(course: Course) -> dict:
    """{assignment: its maximum points} for the released assignments."""
    with course.gradebook() as gb:
        return {a: float(gb.find_assignment(a).max_score) for a in released(course)}


def export(course: Course, path: str | None = None, exclude=()) -> str:
    """grades.csv (COLUMNS: one row per student, released assignment and question),
    grades_by_student.csv (for an LMS) and grades.png; withdrawn students left out."""
    rows = list(grade_rows(course, exclude))
    path = path or course.path("grades.csv")
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows({k: f"{v:g}" if isinstance(v, float) else v for k, v in row.items()}
                         for row in rows)
    students = sorted(course.students() - set(exclude) - course.withdrawn())
    table = totals(rows)
    by_student(table, max_points(course), students,
               os.path.join(os.path.dirname(path), "grades_by_student.csv"))
    plot_totals(table, os.path.splitext(path)[0] + ".png")
    return path


def by_student(table: dict, maximum: dict, students, path: str) -> None:
    """One row per student, one column per released assignment (late-adjusted total, 0 when
    nothing was handed in), then Total and Missing (the assignments counted as 0), after a
    first row of maximum points: the shape Canvas's and Moodle's gradebook imports take
    (README: *A term with this course*)."""
    assignments = list(maximum)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["Student", *assignments, "Total", "Missing"])
        writer.writerow([MAX_ROW, *(f"{maximum[a]:g}" for a in assignments),
                         f"{sum(maximum.values()):g}", ""])
        for student in students:
            points = [table.get((student, a), (0.0, 0.0))[0] for a in assignments]
            missing = [a for a in assignments if (student, a) not in table]
            writer.writerow([student, *(f"{p:g}" for p in points), f"{sum(points):g}",
                             " ".join(missing)])


def plot_totals(table: dict, path: str) -> None:
    """One histogram per assignment: how many students scored in each tenth of the points
    (`table`: {(student, assignment): (points, maximum)})."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    assignments = sorted({a for _, a in table}) or ["(no grades yet)"]
    fig, axes = plt.subplots(len(assignments), 1, figsize=(7, 1.9 * len(assignments) + 0.6),
                             squeeze=False, sharex=True)
    edges = np.linspace(0, 100, 11)
    for ax, a in zip(axes[:, 0], assignments):
        totals = [100 * earned / max(1e-9, possible)
                  for (_, aa), (earned, possible) in table.items() if aa == a]
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



NBGRADER_EXPORT = "nbgrader_grades.csv"  # not grades.csv: that is `course export`'s


class CourseCsvExport(CsvExportPlugin):
    """nbgrader's CSV export as `nbgrader export` runs it on this course (nbgrader_config.py):
    its own file (nbgrader_grades.csv, one row per submission, nbgrader's columns), and
    withdrawn students (withdrawn.txt) left out. Its numbers are the ones grades.csv adds up
    to: the gradebook's scores with manual scores, extra credit and the late penalty."""

    to = Unicode("", help="destination (default: nbgrader_grades.csv)").tag(config=True)

    @default("to")
    def _to_default(self):
        return NBGRADER_EXPORT

    def export(self, gradebook) -> None:
        from course_lib.grading.course import withdrawn_ids
        out = withdrawn_ids(self.parent.coursedir.root)
        chosen = self.student or [s.id for s in gradebook.students]
        # an id no student has keeps nbgrader from reading [] as "everyone"
        self.student = [s for s in chosen if s not in out] or [""]
        if out:
            self.log.info("Leaving out withdrawn students (withdrawn.txt): %s",
                          ", ".join(sorted(out)))
        super().export(gradebook)
