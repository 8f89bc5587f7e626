"""nbgrader's own files in a submission reach grading; anything else is reported and left out."""
import os

from course_lib.grading.pipeline import stage_submission
from harness import CORRECT, make_tiny_course, submission, submit


def test_exchange_files_are_kept_and_other_files_reported(tmp_path):
    course = make_tiny_course(str(tmp_path / "course"))
    folder = submit(course, "ada", "tiny", submission(CORRECT), name="tiny.ipynb")
    # `nbgrader submit` writes both; release_feedback needs the secret to name the feedback.
    for name, text in (("timestamp.txt", "2026-01-01 00:00:00 UTC"),
                       ("submission_secret.txt", "s3cret"), ("notes.txt", "mine")):
        with open(os.path.join(folder, name), "w") as f:
            f.write(text)
    stage = str(tmp_path / "stage")
    reasons = stage_submission(course, "ada", "tiny", stage, {"tiny": {"square_grad"}})
    staged = sorted(os.listdir(os.path.join(stage, "ada", "tiny")))
    assert staged == ["submission_secret.txt", "timestamp.txt", "tiny.ipynb"]
    assert reasons == ["extra files ignored by the grader: notes.txt"], reasons
