"""`course release`: nbgrader generate_assignment, which also records the source cells."""
from __future__ import annotations

from course_lib.grading.course import Course


class ReleaseError(RuntimeError):
    pass


def release(course: Course, assignment: str) -> None:
    result = course.api().generate_assignment(assignment, force=True, create=True)
    if not result["success"]:
        raise ReleaseError(f"nbgrader could not release {assignment}:\n"
                           f"{result.get('error') or result.get('log')}")
