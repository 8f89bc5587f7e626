"""Gradebooks and autograded/ folders as plain data, to compare two grading runs cell for cell;
and today's finalize (nbgrader's Autograde converter, one submission at a time) as a reference."""
from __future__ import annotations

import json
import os
import warnings

import nbformat
from traitlets.config import Config

from course_lib.grading import pipeline
from course_lib.grading import preprocessors as pp

# the autograde preprocessors the one-at-a-time finalizer ran, with nbgrader's database writers
CONVERTER_PREPROCESSORS = [
    "course_lib.grading.preprocessors.InjectResults",
    "course_lib.grading.preprocessors.SanitizeStudentCells",  # what the kernel printed
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]


def dump(course) -> dict:
    """Every row nbgrader tools read: students, submissions (timestamp, extension), notebooks
    (late penalty, score), grades (auto, manual, extra credit, needs_manual_grade), comments."""
    rows = {}
    with course.gradebook() as gb:
        rows["students"] = sorted(s.id for s in gb.students)
        for a in gb.assignments:
            for sub in a.submissions:
                key = (sub.student.id, a.name)
                rows[key] = (sub.timestamp, sub.extension)
                for nb in sub.notebooks:
                    rows[key + (nb.name,)] = (nb.late_submission_penalty, float(nb.score),
                                              nb.flagged)
                    for g in nb.grades:
                        rows[key + (nb.name, "grade", g.name)] = (
                            g.auto_score, g.manual_score, g.extra_credit, g.needs_manual_grade)
                    for c in nb.comments:
                        rows[key + (nb.name, "comment", c.name)] = (c.auto_comment,
                                                                    c.manual_comment)
    return rows


def autograded(course, cell_ids=True) -> dict:
    """{path under autograded/: (bytes, permission bits)}; without `cell_ids`, a notebook's
    cells' ids are left out (random ones are made up for the cells put in at finalizing: the
    grader's note at the top, a test cell nbgrader puts back), the rest compared as written."""
    top, found = course.path("autograded"), {}
    for dirpath, _, files in os.walk(top):
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                data = f.read()
            if not cell_ids and name.endswith(".ipynb"):
                nb = json.loads(data)
                for cell in nb["cells"]:
                    cell.pop("id", None)
                data = json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False).encode()
            found[os.path.relpath(path, top)] = (data, os.stat(path).st_mode & 0o777)
    return found


def reference_finalize(course, assignment, limits, sandbox=True) -> None:
    """Today's finalize over the executions in the course's cache (all must be there): each
    submission through nbgrader's Autograde converter (`api.autograde`), one after another."""
    setup = pipeline.Setup(course.root, course.db_url, limits, sandbox)
    station = pipeline.Station(setup)
    cache = pipeline.ResultCache(course.path(pipeline.CACHE, "results"))
    extra = Config()
    extra.Autograde.autograde_preprocessors = CONVERTER_PREPROCESSORS
    extra.CourseDirectory.submitted_directory = station.stage
    extra.Autograde.permissions = 400
    api = course.api(extra)
    old = os.umask(0o077)
    try:
        for student, a in pipeline.submissions(course, assignment):
            job = pipeline.prepare_job(station, student, a)
            for task in job.tasks:
                result = cache.get(task)
                assert result is not None, f"{task.key} is not in the cache"
                pipeline.execute_done(job, result)
            _finalize_one(course, api, job)
    finally:
        os.umask(old)
        station.close()


def _finalize_one(course, api, job) -> None:
    if job.outcome.status in ("skipped", "failed"):
        return
    student, a = job.student, job.assignment
    if not job.done:
        with course.gradebook() as gb:
            gb.update_or_create_student(student)
            submission = gb.update_or_create_submission(a, student)
            for notebook in submission.notebooks:
                for grade in notebook.grades:
                    grade.auto_score = 0
                    grade.needs_manual_grade = False
            gb.db.commit()
        return
    pp.InjectResults.results = {(student, a, nb): (nbformat.reads(executed, as_version=4), v)
                                for nb, (_, executed, v) in job.done.items()}
    pp.InjectResults.notes = {(student, a, nb): job.outcome.reasons for nb in job.done}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = api.autograde(a, student, force=True, create=True)
    finally:
        pp.InjectResults.results, pp.InjectResults.notes = {}, {}
    assert result["success"], result.get("error") or result.get("log")
