"""A check inside the notebook, for self-study: one exercise's tests on this kernel, at once.

    from course_lib.selfstudy import check; check("Tensor")

In a course checkout (`source/` present) it runs the exercise's visible and hidden tests, their
text taken from source/, on the definitions this kernel holds right now: nothing is re-run,
so a check after editing and re-running one cell takes the tests' own time. The messages are
`course check`'s. It trusts the kernel (whatever the notebook's cells changed, it believes):
it is for learning, not grading; `course check` runs the notebook sandboxed, as grading does.
Without source/ (a class, an installed package) it runs the visible tests of the notebook
file and says that the hidden ones are the instructor's.
"""
from __future__ import annotations

import contextlib
import io
import os
import secrets
import sys

from course_lib.grading import cells as cellids
from course_lib.grading import selfcheck
from course_lib.grading.course import find_root, is_course, package_course

TRUST_NOTE = ("Self-study mode: this runs in your kernel and trusts it (whatever your cells "
              "changed, it believes), so it is for learning, not grading. `course check "
              "NOTEBOOK` runs your notebook sandboxed, as grading does.")


class CheckError(Exception):
    """A check that cannot run (an unknown name): shown in a notebook as its message alone."""

    def _render_traceback_(self):
        return [f"{type(self).__name__}: {self}"]


def check(name: str, notebook: str | None = None, verbose: bool = True) -> None:
    """Run the tests of exercise `name` on this kernel's definitions and print the report.

    `notebook`: the notebook file whose visible tests to run where there is no source/
    (default: the one this kernel belongs to, as JupyterLab tells it).
    """
    namespace = _user_namespace()
    mine = notebook or namespace.get("__session__")
    try:
        tests, where, hidden = _tests_for(name, namespace, mine)
    except SystemExit as e:
        raise CheckError(str(e)) from None
    seeds = {gid: secrets.randbits(63) for gid, _, _ in tests} if hidden else {}
    results, messages = {}, {}
    for gid, text, points in tests:
        message = run_test(text, namespace, seeds)
        results[gid] = (0.0 if message else points, points)
        if message:
            messages[gid] = message
    kind = "visible and hidden tests, from source/" if hidden else \
        "visible tests only: the hidden ones are your instructor's, run when your work is graded"
    print(f"{name}: {len(tests)} test cell(s) of {where} ({kind}), run on your definitions "
          f"as they are now.\n{TRUST_NOTE}\n")
    print(selfcheck.render(results, messages, verbose, [name]))


def run_test(text: str, namespace: dict, seeds: dict) -> str | None:
    """Run one test cell's text on a copy of the kernel's names; None, or why it failed."""
    from course_lib.checks import core
    scope = dict(namespace)  # the test's own names (x, t, E...) must not overwrite the learner's
    try:
        code = compile(text, "<test cell>", "exec")
        with core.reaching(core.InKernel(seeds)), core.quiet(), \
                contextlib.redirect_stdout(io.StringIO()):
            exec(code, scope)
    except AssertionError as e:
        return str(e) or "a check failed"
    except RuntimeError as e:
        if "course bug" in str(e):
            raise
        return f"{type(e).__name__}: {str(e)[:200]}"
    except Exception as e:  # noqa: BLE001 (the learner's object broke the check's own code)
        return f"{type(e).__name__}: {str(e)[:200]}"
    return None


def _user_namespace() -> dict:
    """The kernel's global names (IPython's user namespace, else __main__'s)."""
    try:
        from IPython import get_ipython
        shell = get_ipython()
    except ImportError:
        shell = None
    return shell.user_ns if shell is not None else vars(sys.modules["__main__"])


def _tests_for(name: str, namespace: dict, mine: str | None):
    """([(test id, text, points)], where they come from, whether hidden tests are among them)."""
    root = _course_root(mine)
    if root is not None and os.path.isdir(os.path.join(root, "source")):
        assignment, label, nb = _source_notebook(root, name, namespace, mine)
        return _selected(nb, name), f"{assignment}/{label}.ipynb", True
    path = _notebook_file(mine)
    if path is None:
        raise SystemExit("no source/ here and no notebook file to read the visible tests from: "
                         "pass it, e.g. check(%r, notebook='my_notebook.ipynb')" % name)
    nb = selfcheck.read_json_notebook(path)
    visible = [(gid, text, p) for gid, text, p in _selected(nb, name)
               if selfcheck.HIDDEN_BEGIN not in text and "suite(" in text]
    return visible, os.path.basename(path), False


def _selected(nb: dict, name: str):
    points = {cellids.grade_id(c): float(c["metadata"]["nbgrader"].get("points") or 0)
              for c in nb["cells"] if cellids.grade_id(c)}
    texts = dict(selfcheck._test_cells(nb))
    return [(gid, texts[gid], points[gid]) for gid in selfcheck.select_tests(nb, [name])]


def _course_root(mine: str | None) -> str | None:
    """The course checkout this kernel works in: above the notebook, the current folder, or
    the one the package was installed from; None in a class (an installed package)."""
    starts = [os.path.dirname(os.path.abspath(mine))] if mine else []
    for start in starts + [os.getcwd()]:
        try:
            return find_root(start)
        except SystemExit:
            continue
    root = package_course()
    return root if root and is_course(root) else None


def _notebook_file(mine: str | None) -> str | None:
    if not mine:
        return None
    for path in (mine, os.path.join(os.getcwd(), os.path.basename(mine))):
        if os.path.isfile(path):
            return path
    return None


def _source_notebook(root: str, name: str, namespace: dict, mine: str | None):
    """(assignment, notebook, its JSON) of the source notebook that grades `name`; when several
    do (`training`), the one named like this notebook, else the one whose exercises this
    kernel defines most of."""
    found = []
    for assignment, label, path in selfcheck.source_notebooks(root):
        nb = selfcheck.read_json_notebook(path)
        if name in selfcheck.graded_names(nb):
            found.append((assignment, label, nb))
    if not found:
        names = [n for _, _, p in selfcheck.source_notebooks(root)
                 for n in selfcheck.graded_names(selfcheck.read_json_notebook(p))]
        raise SystemExit(f"check({name!r}): nothing graded in this course is called {name!r}; "
                         f"check() accepts: {', '.join(dict.fromkeys(names))}")
    base = os.path.basename(mine or "")

    def fit(entry):
        _, label, nb = entry
        defined = sum(n in namespace for n in selfcheck.exercises(nb))
        return (base == f"{label}.ipynb", defined)
    return max(found, key=fit)
