"""Late work, kept where nbgrader keeps it: an assignment's due date (`Assignment.duedate`),
a student's extension (`SubmittedAssignment.extension`), and the penalty nbgrader's
`AssignLatePenalties` computes at grading with the plugin nbgrader_config.py names.

So `course grade`'s table, grades.csv, feedback pages, `nbgrader export` and the formgrader's
gradebook all read the same numbers.
"""
from __future__ import annotations

import datetime
import math

from nbgrader import utils
from nbgrader.plugins import LateSubmissionPlugin
from traitlets import Float

from course_lib.grading.course import Course


class PercentPerDay(LateSubmissionPlugin):
    """The course's late policy: `percent_per_day` of a notebook's score for every started day
    after the due date (and extension), never more than the score. 0 turns penalties off.
    nbgrader's own `c.LateSubmissionPlugin.penalty_method = "zero"` (its documented setting,
    which reaches this subclass through traitlets) is honoured: late work then scores 0."""

    percent_per_day = Float(10.0, help="percent of the score lost per started day late"
                            ).tag(config=True)

    def late_submission_penalty(self, student_id, score, total_seconds_late):
        if self.penalty_method == "zero":
            return score
        return min(score, score * started_days(total_seconds_late) * self.percent_per_day / 100)

    def describe(self) -> str:
        """The policy in a sentence, for feedback pages."""
        if self.penalty_method == "zero":
            return "late work scores 0"
        return f"{self.percent_per_day:g} % of the score per started day late"


def started_days(seconds_late: float) -> int:
    return math.ceil(seconds_late / 86400) if seconds_late > 0 else 0


def how_late(seconds_late: float) -> str:
    """'1 day 0 h 0 min' style, to the minute (a second late reads as 1 min)."""
    minutes = math.ceil(seconds_late / 60)
    days, minutes = divmod(minutes, 1440)
    hours, minutes = divmod(minutes, 60)
    return (f"{days} day{'s' * (days != 1)} " if days else "") + f"{hours} h {minutes} min"


def policy(config) -> str:
    """The late policy nbgrader applies with this configuration, in words."""
    from nbgrader.preprocessors import AssignLatePenalties
    plugin = AssignLatePenalties(config=config).plugin_class(config=config)
    if hasattr(plugin, "describe"):
        return plugin.describe()
    if getattr(plugin, "penalty_method", None) == "zero":
        return "late work scores 0"
    return f"{type(plugin).__name__} (see nbgrader_config.py)"


def set_due(course: Course, assignment: str, when: str | None) -> datetime.datetime | None:
    """Set (or with None clear) an assignment's due date; a time without a zone is UTC."""
    duedate = utils.parse_utc(when) if when else None
    with course.gradebook() as gb:
        a = gb.find_assignment(assignment)
        a.duedate = duedate
        gb.db.commit()
    return duedate


def due(course: Course, assignment: str) -> datetime.datetime | None:
    with course.gradebook() as gb:
        return gb.find_assignment(assignment).duedate


def extend(course: Course, student: str, assignment: str, days=0.0, hours=0.0) -> None:
    """A student's extension (nbgrader's; 0 removes it). nbgrader keeps it on the submission,
    so a record is made for a student who has not handed in yet; it keeps no score."""
    with course.gradebook() as gb:
        gb.find_assignment(assignment)  # an unknown one raises before the student is added
        gb.update_or_create_student(student)
        gb.update_or_create_submission(assignment, student)
        gb.grant_extension(assignment, student, days=days, hours=hours)


def extensions(course: Course, assignment: str) -> dict:
    with course.gradebook() as gb:
        return {s.student.id: s.extension for s in gb.find_assignment(assignment).submissions
                if s.extension}
