"""`course feedback`: nbgrader's feedback pages, with hidden tests reduced to their verdicts.

The autograded notebooks already hold only our verdict messages in test cells (no traceback
into test code); here the hidden regions of the test cells' text are removed as well.
"""
from __future__ import annotations

import os
import shutil

from nbconvert.exporters import HTMLExporter

from course_lib.grading.course import Course, folders

# nbgrader's API asks for the template "feedback" by name: ours has that name and comes first.
TEMPLATE = "feedback"


class FeedbackExporter(HTMLExporter):
    """The exporter of feedback pages (GenerateFeedback's, set in nbgrader_config.py): the
    course's template is configured for this class only, so the formgrader's own pages keep
    nbgrader's template."""


def template_dirs() -> list[str]:
    """Where nbconvert finds the course's feedback template (templates/feedback/)."""
    return [os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")]


def generate(course: Course, assignment: str | None = None, students=None) -> list[str]:
    """Pages through nbgrader's GenerateFeedback, with the preprocessors nbgrader_config.py
    gives it (so the formgrader's button and `nbgrader generate_feedback` make the same)."""
    withdrawn = course.withdrawn()
    chosen = [(student, a) for student in folders(course.path("autograded"))
              if not (students and student not in students) and student not in withdrawn
              for a in folders(course.path("autograded", student))
              if not assignment or a == assignment]
    _check_in_gradebook(course, chosen)
    remove_withdrawn(course)
    api = course.api()
    written = []
    for student, a in chosen:
        result = api.generate_feedback(a, student, force=True)
        if not result["success"]:
            raise RuntimeError(f"feedback for {student}/{a} failed: {result.get('error')}")
        folder = course.path("feedback", student, a)
        written += [os.path.join(folder, f) for f in sorted(os.listdir(folder))
                    if f.endswith(".html")]
    return written


def _check_in_gradebook(course: Course, chosen) -> None:
    """Refuse, before any page is written, autograded/ folders the gradebook holds no
    submission for (a gradebook replaced or reset since grading, an unreleased assignment):
    nbgrader would stop on each with a traceback."""
    with course.gradebook() as gb:
        known = {(sub.student.id, a.name) for a in gb.assignments for sub in a.submissions}
    missing = [f"{s}/{a}" for s, a in chosen if (s, a) not in known]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        a = missing[0].split("/")[1]
        raise SystemExit(f"the gradebook has no record of autograded/{missing[0]}{more}: run "
                         f"`course grade {a}` first (and `course release {a}` if it was "
                         "never released)")


def remove_withdrawn(course: Course) -> set[str]:
    """The withdrawn students; their feedback/<student>/ goes, as `nbgrader release_feedback`
    would hand out whatever it finds there."""
    withdrawn = course.withdrawn()
    for student in sorted(withdrawn & set(folders(course.path("feedback")))):
        shutil.rmtree(course.path("feedback", student))
    return withdrawn
