"""nbgrader configuration for Backprop from Scratch (read by nbgrader and by `course`)."""
import os

c = get_config()  # noqa: F821 (provided by nbgrader's config loader)

ROOT = os.path.dirname(os.path.abspath(__file__))

c.CourseDirectory.course_id = "backprop-from-scratch"
c.CourseDirectory.root = ROOT
# SQLite next to this file by default; point at PostgreSQL with `course --db URL` or here.
c.CourseDirectory.db_url = os.environ.get("COURSE_DB_URL", "sqlite:///" + os.path.join(ROOT, "gradebook.db"))
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", ".grading"]

# Plain `nbgrader autograde` / Validate: a cell may run for a minute at most.
c.Execute.timeout = 60
c.Execute.interrupt_on_timeout = True

c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Deleted or edited test cells come back at grading; ours also handles a deleted test cell
# that follows a locked markdown cell (nbgrader 0.9.6 raises KeyError there).
c.OverwriteCells.add_missing_cells = True
# Feedback (`course feedback`, `nbgrader generate_feedback`, the formgrader's button): questions
# named, hidden test regions removed, student markdown sanitized with formulas as MathML,
# outputs after a hidden test left out; the page template (set below) wraps messages.
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "course_lib.grading.preprocessors.GraderMarks",
    "course_lib.grading.preprocessors.NameQuestions",
    "course_lib.grading.preprocessors.HideHiddenTests",
    "course_lib.grading.preprocessors.SanitizeMarkdown",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]
c.Autograde.sanitize_preprocessors = [
    "nbgrader.preprocessors.ClearOutput",
    "nbgrader.preprocessors.DeduplicateIds",
    "nbgrader.preprocessors.OverwriteKernelspec",
    "course_lib.grading.preprocessors.RestoreCells",
    "course_lib.grading.preprocessors.SanitizeStudentCells",
    "nbgrader.preprocessors.CheckCellMetadata",
]
# Plain `nbgrader autograde`: what the kernel printed is sanitized before autograded/ keeps it
# (nbgrader's list, with SanitizeStudentCells after Execute; `course grade` has its own).
c.Autograde.autograde_preprocessors = [
    "nbgrader.preprocessors.Execute",
    "course_lib.grading.preprocessors.SanitizeStudentCells",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]

# Late work: `course due` and `course extend` store due dates and extensions in the gradebook;
# at grading nbgrader's AssignLatePenalties asks this plugin for each late notebook's penalty.
# The course's default: 10 % of the score per started day late (0 turns it off). nbgrader's
# own setting works too: c.LateSubmissionPlugin.penalty_method = "zero" gives 0 for late work.
c.AssignLatePenalties.plugin_class = "course_lib.grading.late.PercentPerDay"
c.PercentPerDay.percent_per_day = 10.0

# `nbgrader zip_collect`: submissions downloaded from Canvas or Moodle (course_lib/grading/lms.py).
c.ZipCollectApp.collector_plugin = "course_lib.grading.lms.LmsFileNames"
# ... and its extractor: zip only, a budget of bytes and files per download (nested zips too).
c.ZipCollectApp.extractor_plugin = "course_lib.grading.lms.BoundedExtractor"
c.FileNameCollectorPlugin.named_regexp = (
    r"^(?P<student_id>.+?)_(?:LATE_|late_)?(?P<participant>\d+)_(?:\d+|assignsubmission_file)_"
    r"(?P<file_id>.+)$")

# nbgrader's tools kept safe on this course (course_lib/grading/nbgrader_safety.py): plain
# `nbgrader autograde` never deletes results of a notebook it cannot find under its name, and
# the formgrader's Autograde button (unsandboxed) is refused with a pointer to `course grade`.
try:
    from course_lib.grading import feedback, formgrader, nbgrader_safety
except ImportError:  # an environment without the course's package: nbgrader as it comes
    pass
else:
    nbgrader_safety.install()
    # nbgrader's exchange: `nbgrader collect` refuses a hand-in that is not its named
    # student's own, or dated in the future; a hand-in is readable by its owner and the
    # instructor only (course_lib/grading/exchange.py; students need the submit line too).
    c.ExchangeFactory.collect = "course_lib.grading.exchange.OwnedCollect"
    c.ExchangeFactory.submit = "course_lib.grading.exchange.PrivateSubmit"
    # The formgrader hides withdrawn students and says its scores are before late penalties.
    formgrader.install()
    # `nbgrader export`: nbgrader_grades.csv (grades.csv is `course export`'s), no withdrawn.
    c.ExportApp.plugin_class = "course_lib.grading.report.CourseCsvExport"
    # Feedback pages: the course's template (course_lib/grading/templates/feedback/), in the
    # place of nbgrader's of the same name, for GenerateFeedback's exporter only (the
    # formgrader's grading view keeps nbgrader's `formgrade` template).
    c.GenerateFeedback.exporter_class = "course_lib.grading.feedback.FeedbackExporter"
    c.FeedbackExporter.template_name = feedback.TEMPLATE
    c.FeedbackExporter.extra_template_basedirs = feedback.template_dirs()
    # Every HTML page made from a submission (the formgrader's grading view, feedback): student
    # markdown through nh3, outputs text and images only (course_lib/grading/preprocessors.py).
    c.HTMLExporter.preprocessors = ["course_lib.grading.preprocessors.SanitizeStudentCells"]
    c.HTMLExporter.filters = {"markdown2html": "course_lib.grading.preprocessors.markdown2html"}
