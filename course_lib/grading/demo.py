"""`course demo`: the whole instructor loop on a made-up class of three.

alice submits the reference solutions, bob the untouched release, carol one typical mistake
per assignment (and a notebook under the wrong file name, which the grader recognises).
"""
from __future__ import annotations

import os
import shutil
import time

import nbformat

from course_lib.grading import feedback, pipeline, report
from course_lib.grading.course import Course
from course_lib.grading.release import release

DEMO_STUDENTS = ("alice", "bob", "carol")

# carol's typical mistake per assignment: (solution cell, text, replacement)
MISTAKES = {
    "01_chain_rule": ("sigmoid_grad", "s * (1 - s)", "s * (1 + s)"),
    "02_manual_backprop": ("linear_regression_grads", "2 *", "1 *"),
    "03_mlp_backward": ("affine", "x.T @ g", "g.T @ x"),
    "04_autodiff_engine": ("Tensor", "unbroadcast(", "(lambda g, shape: g)("),
    "05_attention_backward": ("embedding", "np.add.at(gtable, ids, g)", "gtable[ids] = g"),
    "06_forward_mode": ("JVP", "lambda dy, out, x, y: x @ dy)", "lambda dy, out, x, y: x.T @ dy)"),
}


def _notebook_name(course, assignment):
    return course.notebooks(assignment)[0]


def with_mistake(nb, assignment):
    """carol's notebook: the reference with one typical mistake (or, failing that, unsolved)."""
    gid, old, new = MISTAKES.get(assignment, (None, None, None))
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == gid:
            head, _, answer = cell.source.partition("### BEGIN SOLUTION")
            if old in answer:
                cell.source = head + "### BEGIN SOLUTION" + answer.replace(old, new, 1)
            else:
                cell.source = head + "raise NotImplementedError()"
    return nb


def make_class(course: Course) -> None:
    for a in course.assignments():
        name = _notebook_name(course, a)
        reference = course.path("source", a, f"{name}.ipynb")
        student_version = course.path("release", a, f"{name}.ipynb")
        for student in DEMO_STUDENTS:
            folder = course.path("submitted", student, a)
            shutil.rmtree(folder, ignore_errors=True)
            os.makedirs(folder)
        shutil.copy(reference, course.path("submitted", "alice", a, f"{name}.ipynb"))
        shutil.copy(student_version, course.path("submitted", "bob", a, f"{name}.ipynb"))
        nb = with_mistake(nbformat.read(reference, as_version=4), a)
        target = f"{name} (1).ipynb" if a == "01_chain_rule" else f"{name}.ipynb"
        nbformat.write(nb, course.path("submitted", "carol", a, target))


def _others_in_gradebook(course: Course) -> list[str]:
    with course.gradebook() as gb:
        return [s.id for s in gb.students if s.id not in DEMO_STUDENTS]


def run(root=None, workers=0, sandbox=None) -> int:
    start = time.monotonic()
    course = Course(root)
    others = _others_in_gradebook(course)
    if others:
        raise SystemExit(f"the gradebook already holds real students ({', '.join(others[:3])}...): "
                         "run the demo on a copy of the course (course --root COPY demo)")
    print("1/5 release: nbgrader generate_assignment for every assignment")
    for a in course.assignments():
        release(course, a)
    print("2/5 a made-up class submits: alice (reference), bob (untouched), carol (mistakes)")
    make_class(course)
    print("3/5 grade: " + pipeline.mode_line(sandbox) + "; tests run outside the kernels")
    result = pipeline.grade(course, students=list(DEMO_STUDENTS), workers=workers,
                            sandbox=sandbox)
    print(result.summary())
    print("4/5 feedback")
    pages = feedback.generate(course, students=list(DEMO_STUDENTS))
    print(f"    {len(pages)} pages under feedback/")
    print("5/5 export")
    path = report.export(course)
    print(f"    {os.path.relpath(path)} and grades.png")
    print(report.score_table(pipeline.scores(course), report.question_order(course)))
    print(f"\ndemo finished in {time.monotonic() - start:.0f} s")
    return 1 if result.count("failed") else 0
