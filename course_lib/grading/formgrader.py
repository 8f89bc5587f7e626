"""The formgrader on this course (installed by nbgrader_config.py, like nbgrader_safety): its
lists leave out withdrawn students (withdrawn.txt), and every page says that its scores are
raw, before late penalties, and where the late-adjusted ones are; its grading view says
beside each score box what the tests gave, which a manual score in the box overrides (as the
feedback page says "manual: 1/2, by the grader (the tests gave 0)").

Its file route (`/formgrader/submissions/<id>/<path>`, nbgrader's SubmissionFilesHandler)
serves a submission's folder on the instructor's origin: a student's `notes.html` or `plot.svg`
handed in beside the notebook would run there with the instructor's session. Here that route
serves raster images as images and everything else as plain text, in a CSP sandbox (no script,
an opaque origin), and only from the submission's own autograded/ folder (nbgrader's allows
the whole course, reached with an encoded `..`).

Its grading view gets a Content-Security-Policy: scripts from the server itself (and MathJax's
CDN), plus the inline scripts and handlers nbgrader's template writes before the notebook, by
their hashes; so a script that got into the rendered notebook despite the sanitizing would
not run, and no object, <base> or form may point elsewhere."""
from __future__ import annotations

import base64
import functools
import hashlib
import html
import os
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


# what the file route serves with its own type; anything else is shown as text
RASTER_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
FILES_CSP = "sandbox; default-src 'none'; img-src 'self'; style-src 'unsafe-inline'"


def _confined(parse_url_path):
    @functools.wraps(parse_url_path)
    def confined(self, url_path):
        from tornado import web
        path = parse_url_path(self, url_path)
        folder = parse_url_path(self, url_path.lstrip("/").split("/", 1)[0] + "/")
        inside = os.path.realpath(folder) + os.sep
        if not os.path.realpath(path).startswith(inside):
            raise web.HTTPError(404)
        return path
    confined._course_safe = True
    return confined


def _passive_type(get_content_type):
    @functools.wraps(get_content_type)
    def passive_type(self):
        kind = get_content_type(self)
        return kind if kind in RASTER_TYPES else "text/plain; charset=utf-8"
    passive_type._course_safe = True
    return passive_type


def _sandboxed_csp(csp):
    def sandboxed(self):
        return csp.fget(self) + "; " + FILES_CSP
    sandboxed._course_safe = True
    return property(sandboxed)


def make_files_passive(handler) -> None:
    """nbgrader's SubmissionFilesHandler: only the submission's own folder, raster images as
    images, the rest as text, in a CSP sandbox."""
    if getattr(handler.parse_url_path, "_course_safe", False):
        return
    handler.parse_url_path = _confined(handler.parse_url_path)
    handler.get_content_type = _passive_type(handler.get_content_type)
    handler.content_security_policy = _sandboxed_csp(handler.content_security_policy)


# where nbgrader's formgrade template starts the notebook: everything before is the template's
NOTEBOOK_START = 'id="notebook-container"'
MATHJAX_CDN = "https://cdnjs.cloudflare.com"
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\ssrc=)[^>]*>(.*?)</script>", re.S | re.I)
INLINE_HANDLER = re.compile(r'\son[a-z]+\s*=\s*"([^"]*)"', re.I)


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def grading_view_csp(page: str) -> str:
    """The policy of one grading view: hashes of the template's inline code only (what comes
    before the notebook), never of anything inside it."""
    cut = page.find(NOTEBOOK_START)
    template = page[:cut] if cut >= 0 else ""
    hashes = sorted({_sha256(body) for body in INLINE_SCRIPT.findall(template)}
                    | {_sha256(html.unescape(v)) for v in INLINE_HANDLER.findall(template)})
    return "; ".join([
        "default-src 'self'",
        f"script-src 'self' {MATHJAX_CDN} 'unsafe-hashes' " + " ".join(hashes),
        f"style-src 'self' 'unsafe-inline' {MATHJAX_CDN}",
        f"font-src 'self' data: {MATHJAX_CDN}",
        "img-src 'self' data:", "connect-src 'self'", "object-src 'none'", "frame-src 'none'",
        "base-uri 'self'", "form-action 'self'", "frame-ancestors 'self'"])


def _with_csp(write):
    @functools.wraps(write)
    def write_with_csp(self, chunk):
        if isinstance(chunk, str) and NOTEBOOK_START in chunk:
            self.set_header("Content-Security-Policy", grading_view_csp(chunk))
        return write(self, chunk)
    write_with_csp._course_safe = True
    return write_with_csp


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
    if handlers is not None:
        make_files_passive(handlers.SubmissionFilesHandler)
        if not getattr(handlers.SubmissionHandler.write, "_course_safe", False):
            handlers.SubmissionHandler.write = _with_csp(handlers.SubmissionHandler.write)
        if not getattr(handlers.SubmissionHandler.get, "_course_safe", False):
            handlers.SubmissionHandler.get = _scored(handlers.SubmissionHandler.get)
