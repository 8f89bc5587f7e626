"""nbgrader's own tools, made safe on this course; installed by nbgrader_config.py, so in
every process that reads it (`nbgrader` commands, the formgrader's server, `course`).

- Plain `nbgrader autograde` (and so the formgrader's button) with `--force` first deletes a
  student's autograded/ folder, then finds no notebook when the student renamed it, leaving
  nothing: here it refuses before deleting anything when a notebook the gradebook expects is
  missing under its name, and points at `course grade`, which recognises renamed notebooks.
- The formgrader's *Autograde* button would run student code unsandboxed in the server: on this
  course it is refused with a message saying to run `course grade` (nbgrader offers no hook
  to replace what the button runs; its JavaScript shows our message in its error dialog).
"""
from __future__ import annotations

import json
import os
import sys

REFUSED = ("On this course the formgrader's Autograde button is turned off: it would run the "
           "student's code unsandboxed inside this server. In a terminal, in the course folder, "
           "run `course grade {assignment} --student {student}` (sandboxed; it recognises "
           "renamed notebooks), then reload this page.")


def missing_notebooks(coursedir, assignment: str, student: str) -> list[str]:
    """The assignment's notebooks that nbgrader would not find in submitted/ under their name."""
    from nbgrader.api import Gradebook, MissingEntry
    folder = coursedir.format_path(coursedir.submitted_directory, student, assignment)
    try:
        with Gradebook(coursedir.db_url, coursedir.course_id) as gb:
            names = [nb.name for nb in gb.find_assignment(assignment).notebooks]
    except MissingEntry:
        return []
    return [n for n in names if not os.path.isfile(os.path.join(folder, f"{n}.ipynb"))]


def _keep_results(original):
    def init_destination(self, assignment_id, student_id):
        dest = self._format_dest(assignment_id, student_id)
        missing = missing_notebooks(self.coursedir, assignment_id, student_id)
        if missing and os.path.exists(dest):
            self.log.error(
                "%s/%s: no %s in submitted/ under that name (renamed?). Earlier results in %s "
                "are kept; grade it with `course grade %s --student %s`, which recognises "
                "renamed notebooks.", student_id, assignment_id,
                ", ".join(f"{n}.ipynb" for n in missing), dest, assignment_id, student_id)
            return False
        return original(self, assignment_id, student_id)
    init_destination._course_safe = True
    return init_destination


def _refuse_button(handler_cls):
    def post(self, assignment_id, student_id):
        self.write(json.dumps({"success": False, "error": REFUSED.format(
            assignment=assignment_id, student=student_id), "log": ""}))
    post._course_safe = True
    handler_cls.post = post


def install() -> None:
    from nbgrader.converters.autograde import Autograde
    if not getattr(Autograde.init_destination, "_course_safe", False):
        Autograde.init_destination = _keep_results(Autograde.init_destination)
    handlers = sys.modules.get("nbgrader.server_extensions.formgrader.apihandlers")
    if handlers is not None and not getattr(handlers.AutogradeHandler.post, "_course_safe", False):
        _refuse_button(handlers.AutogradeHandler)
