"""The formgrader on this course (installed by nbgrader_config.py, like nbgrader_safety): its
lists leave out withdrawn students (withdrawn.txt), and every page says that its scores are
raw, before late penalties, and where the late-adjusted ones are; its grading view says
beside each score box what the tests gave, which a manual score in the box overrides (as the
feedback page says "manual: 1/2, by the grader (the tests gave 0)")."""
from __future__ import annotations

import functools
import re
import sys

NOTE = ('<div class="alert alert-info course-note" role="note">On this course the formgrader '
        "shows <b>raw scores, before late penalties</b> (the autograder's or your manual "
        "score, plus extra credit). The late-adjusted scores are in <code>course grade</code>'s "
        "table, <code>grades.csv</code> (<code>course export</code>) and the feedback pages. "
        "Withdrawn students (<code>withdrawn.txt</code>) are not listed.</div>")
ANCHOR = '<div class="col-md-10">'

# NbGraderAPI listings the formgrader's pages are built from: method -> where the student is
LISTINGS = {"get_students": "id", "get_submissions": "student",
            "get_notebook_submissions": "student"}


def _without_withdrawn(method, key):
    @functools.wraps(method)
    def listing(self, *args, **kwargs):
        from course_lib.grading.course import withdrawn_ids
        out = withdrawn_ids(self.coursedir.root)
        return [row for row in method(self, *args, **kwargs) if row.get(key) not in out]
    listing._course_safe = True
    return listing


def _no_withdrawn_student(method):
    @functools.wraps(method)
    def student_listing(self, student_id, *args, **kwargs):
        from course_lib.grading.course import withdrawn_ids
        if student_id in withdrawn_ids(self.coursedir.root):
            return []
        return method(self, student_id, *args, **kwargs)
    student_listing._course_safe = True
    return student_listing


def with_note(html: str) -> str:
    """A formgrader page with the course's note at the top of its main column."""
    return html.replace(ANCHOR, ANCHOR + NOTE, 1) if ANCHOR in html else html


def _noted(render):
    @functools.wraps(render)
    def noted_render(self, name, **ns):
        return with_note(render(self, name, **ns))
    noted_render._course_safe = True
    return noted_render


# nbgrader's formgrade template: a question's score box, then " / <points>"
SCORE_BOX = re.compile(r'(<input class="score tabbable" id="(?P<gid>[^"]+)"[^>]*>\s*/\s*[0-9.]+)')


def with_test_scores(page: str, tests: dict) -> str:
    """The grading view with "the tests gave X/Y" after each score box ({grade_id: (auto
    score, max score)}; a question the tests did not score gets nothing)."""
    def noted(match):
        auto, possible = tests.get(match["gid"], (None, None))
        if auto is None:
            return match[0]
        return (f'{match[0]} <span class="course-tests">(the tests gave {_points(auto)}/'
                f'{_points(possible)}; a score in the box overrides it)</span>')
    return SCORE_BOX.sub(noted, page)


def _points(value: float) -> str:
    """Points as the feedback page and the formgrader print them (1.0, 0.5, 0.33)."""
    return str(round(float(value), 2))


def autograder_scores(gradebook, submission_id: str) -> dict:
    """{grade_id: (auto score or None, max score)} of one submitted notebook ({}: unknown)."""
    from nbgrader.api import MissingEntry
    try:
        grades = gradebook.find_submission_notebook_by_id(submission_id).grades
    except MissingEntry:
        return {}
    return {g.name: (None if g.auto_score is None else float(g.auto_score),
                     float(g.max_score)) for g in grades}


def _scored(get):
    @functools.wraps(get)
    def scored_get(self, submission_id):
        write = self.write

        def write_scored(chunk):
            if isinstance(chunk, str):
                chunk = with_test_scores(chunk, autograder_scores(self.gradebook, submission_id))
            write(chunk)
        self.write = write_scored
        try:
            return get(self, submission_id)
        finally:
            del self.write
    scored_get._course_safe = True
    return scored_get


def install() -> None:
    from nbgrader.apps.api import NbGraderAPI
    for name, key in LISTINGS.items():
        if not getattr(getattr(NbGraderAPI, name), "_course_safe", False):
            setattr(NbGraderAPI, name, _without_withdrawn(getattr(NbGraderAPI, name), key))
    for name in ("get_student_submissions", "get_student_notebook_submissions"):
        if not getattr(getattr(NbGraderAPI, name), "_course_safe", False):
            setattr(NbGraderAPI, name, _no_withdrawn_student(getattr(NbGraderAPI, name)))
    base = sys.modules.get("nbgrader.server_extensions.formgrader.base")
    if base is not None and not getattr(base.BaseHandler.render, "_course_safe", False):
        base.BaseHandler.render = _noted(base.BaseHandler.render)
    handlers = sys.modules.get("nbgrader.server_extensions.formgrader.handlers")
    if handlers is not None and not getattr(handlers.SubmissionHandler.get, "_course_safe", False):
        handlers.SubmissionHandler.get = _scored(handlers.SubmissionHandler.get)
