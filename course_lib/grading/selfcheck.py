"""`course check NOTEBOOK`: a learner grades their own notebook with the hidden tests.

The full check runs the instructor's pipeline on a throwaway course (nbgrader release, then
`course grade` for one student), so a learner sees exactly what an instructor would; the
notebook may live anywhere under any name: its assignment is recognised from its cells.
`--only NAME` takes a shorter road to the same tests: no nbgrader at all, the test cells' text
read from source/, the notebook run in the same sandboxed runner only as far as the exercise,
while the grader's references (torch) are imported alongside. The sandbox is used where
bubblewrap exists; elsewhere (macOS, Windows) the kernel runs unsandboxed, which is fine
here: a learner can only fool themselves.

This module's top imports are light on purpose (the in-notebook check reuses its helpers).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import sys
import tempfile
import textwrap
import threading
import time
from concurrent.futures import Future

from course_lib.grading import cells as cellids
from course_lib.grading.warm import since_process_start as _since_process_start

HIDDEN_BEGIN = "### BEGIN HIDDEN TESTS"
last_assignment = None  # what the last check recognised (a check helper warms up for it)


def read_json_notebook(path: str) -> dict:
    """A course notebook as plain JSON (the course's own files: no validation needed)."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def text(cell) -> str:
    """A cell's source, whether stored as one string or as a list of lines."""
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def source_notebooks(course_root: str, folder: str = "source"):
    """(assignment, notebook name, path) of every notebook under `folder`/ of the course."""
    top = os.path.join(course_root, folder)
    for a in sorted(os.listdir(top)) if os.path.isdir(top) else []:
        sub = os.path.join(top, a)
        for f in sorted(os.listdir(sub)) if os.path.isdir(sub) else []:
            if f.endswith(".ipynb"):
                yield a, f[:-6], os.path.join(sub, f)


def recognise(nb, course_root: str) -> tuple[str, str]:
    """(assignment, notebook) whose source cells the submitted notebook shares most."""
    ids = cellids.grade_ids(nb)
    best, best_overlap = None, 0
    for a, name, path in source_notebooks(course_root):
        overlap = len(ids & _ids(read_json_notebook(path)))
        if overlap > best_overlap:
            best, best_overlap = (a, name), overlap
    if best is None:
        raise SystemExit("this notebook shares no graded cells with any assignment of the course")
    return best


def _ids(nb: dict) -> set:
    return {gid for gid in map(cellids.grade_id, nb["cells"]) if gid}


class Clock:
    """Where a check's time goes: named phases, printed with --timings."""

    def __init__(self):
        self.began = self.last = time.monotonic()
        self.phases = {"process start": _since_process_start()}

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.phases[name] = self.phases.get(name, 0.0) + now - self.last
        self.last = now

    def line(self) -> str:
        total = (self.phases.get("process start") or 0.0) + time.monotonic() - self.began
        return "timings: " + ", ".join(f"{k} {v:.2f} s" for k, v in self.phases.items()
                                       if v is not None) + f", total {total:.2f} s"


def check(path: str, root: str | None = None, sandbox=None, verbose=False, keep=False,
          only=(), timings=False, spare=None, width=None, started=None) -> int:
    """Check the notebook at `path`; 0 when every selected test passed and no cell raised.
    `spare`: an `EarlyKernel` started beforehand (`--watch`, the check helper), used by an
    `--only` check; `started`: seconds the command took to reach the helper."""
    from course_lib.grading.course import find_root
    clock = Clock()
    if spare is not None:  # --watch or the helper: this process started long ago
        clock.phases["process start"] = started
    root = root or find_root()
    # first: the kernel starts while we read (not for a name nothing grades: that is an error)
    early = spare or (EarlyKernel(sandbox) if only and _known_somewhere(root, only) else None)
    try:
        return _check(path, root, sandbox, verbose, keep, only, timings, clock, early, width)
    finally:
        if early is not None:
            early.close()


def watch(path: str, **options) -> int:
    """Check `path` now and again each time it is saved, until Ctrl-C. With `only`, the next
    check's sandboxed kernel is started as soon as one ends: a save finds it ready (fresh)."""
    from course_lib.grading.course import find_root
    options["root"] = options.get("root") or find_root()
    warm = bool(options.get("only")) and _known_somewhere(options["root"], options["only"])
    seen, spare = None, None
    try:
        while True:
            stamp = _stamp(path)
            if stamp != seen:
                seen = stamp
                try:
                    check(path, spare=spare, **options)
                except SystemExit as e:  # a wrong name, a half-written file: say it, go on
                    print(e)
                spare = EarlyKernel(options.get("sandbox"), warm_up_for(
                    options["root"], last_assignment)) if warm else None
                print(f"\nwatching {path}: save it to check again (Ctrl-C stops)", flush=True)
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0
    finally:
        if spare is not None:
            with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C: bwrap dies with us
                spare.close()


def _stamp(path: str):
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size


def _known_somewhere(root: str, names) -> bool:
    """Whether some notebook of the course grades every name in `names`."""
    notebooks = [read_json_notebook(path) for _, _, path in source_notebooks(root)]
    graded = {n for nb in notebooks for n in graded_names(nb)}
    texts = [t for nb in notebooks for _, t in _test_cells(nb)]
    return all(name in graded or any(re.search(rf"\b{re.escape(name)}\b", t) for t in texts)
               for name in names)


def _check(path, root, sandbox, verbose, keep, only, timings, clock, early, width) -> int:
    global last_assignment
    import nbformat
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as e:
        raise SystemExit(f"{path} is not a readable notebook: {e}") from None
    assignment, notebook = recognise(nb, root)
    last_assignment = assignment
    source_nb = read_json_notebook(os.path.join(root, "source", assignment, f"{notebook}.ipynb"))
    selected = select_tests(source_nb, only) if only else ()
    if early is not None:
        sandbox = early.sandbox.result()
    elif sandbox is None:  # a learner's own notebook: the sandbox where there is one
        from course_lib.grading.sandbox import bwrap_available
        sandbox = bwrap_available()
    what = f" (only {', '.join(only)}: {len(selected)} test cells)" if only else ""
    print(f"checking {path} as {assignment}/{notebook}.ipynb{what} "
          + ("(sandboxed) ..." if sandbox else "(unsandboxed: bubblewrap is not available "
             "here; fine for your own notebook) ..."), flush=True)
    clock.lap("read")
    if selected:
        outcome = _run_selected(nb, source_nb, root, assignment, notebook, selected, early,
                                clock)
    else:
        outcome = _run_pipeline(path, root, assignment, notebook, sandbox, keep)
    results, messages, raised, reasons = outcome
    clock.lap("report" if selected else "grading")
    print(render(results, messages, verbose, graded_names(source_nb), width, raised=raised))
    for reason in reasons:
        print(f"note: {reason}")
    if timings:
        print(clock.line(), file=sys.stderr)
    earned = sum(e for e, _ in results.values())
    possible = sum(m for _, m in results.values())
    return 0 if results and earned == possible and not raised else 1


class CheckStopped(Exception):
    """Given to an early kernel whose check will not run (so that it is stopped)."""


class EarlyKernel:
    """The sandboxed kernel of an `--only` check, started at once in a thread of its own (the
    grader's references imported in another once it is launched), given its task when ready."""

    def __init__(self, sandbox: bool | None, warm_up=()):
        self.wanted, self.warm_up = sandbox, tuple(warm_up)
        self.sandbox, self.task, self.result = Future(), Future(), Future()
        self.ready = Future()  # set once the kernel has imported `warm_up` and waits
        self.threads = [threading.Thread(target=target, daemon=True)
                        for target in (self._run, _import_references)]
        self.threads[0].start()  # the references once the kernel is launched: they hold the GIL

    def _run(self):
        try:
            from course_lib.grading import runner
            from course_lib.grading.sandbox import Limits, bwrap_available
            available = bwrap_available()
            if self.wanted and not available:
                raise SystemExit("--sandbox: bubblewrap is missing or does not work here "
                                 "(apt-get install bubblewrap)")
            sandbox = available if self.wanted is None else self.wanted
            self.sandbox.set_result(sandbox)
            self.result.set_result(runner.execute_when_given(
                Limits(), sandbox, self.task, self.threads[1].start, self.warm_up,
                lambda: self.ready.set_result(True)))
        except BaseException as e:  # noqa: BLE001 (handed to the main thread)
            for future in (self.sandbox, self.ready, self.result):
                if not future.done():
                    future.set_exception(e)

    def run(self, task):
        """The task's result, run in the kernel started earlier."""
        self.task.set_result(task)
        return self.result.result()

    def close(self):
        """A check that stopped early (an unknown name) stops the kernel, and waits for it."""
        if not self.task.done():
            self.task.set_exception(CheckStopped("the check stopped before its task was ready"))
        self.threads[0].join(60)


def _run_pipeline(path, root, assignment, notebook, sandbox, keep):
    """The full check: nbgrader's release and our grading pipeline, as an instructor's."""
    threading.Thread(target=_import_references, daemon=True).start()  # used at the first test
    import nbformat
    from course_lib.cli import quiet_dependencies
    from course_lib.grading import pipeline
    quiet_dependencies()  # nbgrader's SQLAlchemy notes, now that it is imported
    scratch = tempfile.mkdtemp(prefix="course-check-")
    try:
        os.environ.pop("COURSE_DB_URL", None)
        course = _released_copy(root, assignment, scratch)
        folder = course.path("submitted", "me", assignment)
        os.makedirs(folder)
        shutil.copy(path, os.path.join(folder, f"{notebook}.ipynb"))
        report = pipeline.grade(course, assignment, workers=1, sandbox=sandbox, progress=False)
        scores = pipeline.scores(course, assignment).get(("me", assignment), {})
        graded = course.path("autograded", "me", assignment, f"{notebook}.ipynb")
        executed = nbformat.read(graded, as_version=4) if os.path.exists(graded) else None
        order, messages = _messages(executed)
        results = dict(sorted(scores.items(), key=lambda kv: order.get(kv[0], len(order))))
        raised = raised_cells(executed, set(scores)) if executed is not None else []
        reasons = [r for o in report.outcomes for r in o.reasons]
        return results, messages, raised, reasons
    finally:
        if not keep:
            shutil.rmtree(scratch, ignore_errors=True)


def _run_selected(nb, source_nb, root, assignment, notebook, selected, early, clock):
    """`--only`: the selected tests, no nbgrader; the notebook runs as far as they need."""
    import nbformat
    from course_lib.grading import runner
    from course_lib.grading.sandbox import Limits
    from course_lib.grading.verdicts import seeds_for
    tests = dict(_test_cells(source_nb))
    restore(nb, source_nb, tests)
    nb_json = nbformat.writes(nb)
    seeds = seeds_for(secrets.token_bytes(32), "me", assignment, tests,
                      hashlib.sha256(nb_json.encode()).hexdigest())
    task = runner.Task("me", assignment, notebook, nb_json,
                       runner.read_files(os.path.join(root, "source", assignment)), seeds,
                       Limits(), early.sandbox.result(), tests, tuple(selected))
    clock.lap("imports")
    result = early.run(task)
    waited = time.monotonic() - clock.last
    kernel = ({"kernel ready (kept ready)":
               result.timings.get("kernel after task")} if early.warm_up else
              {"kernel ready (started with the check)": result.timings.get("kernel")})
    clock.phases.update({**kernel, "cells": result.timings.get("cells"),
                         "tests": result.timings.get("tests"), "waited for the kernel": waited})
    clock.last = time.monotonic()
    points = _points(source_nb)
    results, messages = {}, {}
    for gid in selected:
        verdict = result.verdicts.get(gid)
        passed = verdict is not None and verdict.passed
        results[gid] = (points[gid] if passed else 0.0, points[gid])
        if not passed:
            messages[gid] = verdict.message if verdict else "this test did not run"
    executed = nbformat.reads(result.nb_json, as_version=4)
    return results, messages, raised_cells(executed, set(tests)), result.reasons


def warm_up_for(root: str, assignment: str | None) -> tuple:
    """What a kept-ready kernel imports for the next check of `assignment` (see below)."""
    folder = os.path.join(root, "source", assignment or "")
    names = sorted(f for f in os.listdir(folder) if f.endswith(".ipynb")) \
        if assignment and os.path.isdir(folder) else []
    return kernel_imports(read_json_notebook(os.path.join(folder, names[0]))) if names else ()


def kernel_imports(source_nb: dict) -> tuple:
    """The modules the notebook's first code cell imports (the course's own text), for a
    kernel to import before its task arrives; nothing of the learner's runs then."""
    import ast
    first = next((c for c in source_nb["cells"] if c["cell_type"] == "code"), None)
    lines = [l for l in text(first or {}).splitlines() if not l.lstrip().startswith(("%", "!"))]
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError:
        return ()
    found = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    return tuple(dict.fromkeys(found))


def _import_references():
    """What the test cells compute their answers with, imported ahead of them."""
    try:
        import torch  # noqa: F401
        import course_lib.checks.engine  # noqa: F401
    except Exception:  # noqa: BLE001 (the test cell will import and report it itself)
        pass


def _points(nb) -> dict:
    return {cellids.grade_id(c): float(c["metadata"]["nbgrader"].get("points") or 0)
            for c in nb["cells"] if cellids.grade_id(c)}


def restore(nb, source_nb: dict, tests: dict) -> None:
    """What nbgrader's sanitize does for a check, without nbgrader: outputs cleared, repeated
    or malformed identities dropped, course cells (tests, locked cells) back to the course's
    text, deleted test cells put back where they belong."""
    course = {cellids.grade_id(c): c for c in source_nb["cells"] if cellids.grade_id(c)}
    cellids.repair(nb, {gid: c["cell_type"] for gid, c in course.items()})
    seen = set()
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        gid = cellids.grade_id(cell)
        if gid is None:
            continue
        if gid in seen:
            del cell.metadata["nbgrader"]
            continue
        seen.add(gid)
        mine = course.get(gid)
        if mine is not None and not mine["metadata"]["nbgrader"].get("solution"):
            cell.source, cell.metadata["nbgrader"] = text(mine), dict(mine["metadata"]["nbgrader"])
    import nbformat
    order = [cellids.grade_id(c) for c in source_nb["cells"] if cellids.grade_id(c)]
    for gid in order:
        if gid in tests and gid not in seen:
            cell = nbformat.v4.new_code_cell(tests[gid])
            cell.metadata["nbgrader"] = dict(course[gid]["metadata"]["nbgrader"])
            nb.cells.insert(cellids.insert_position(nb, order, gid), cell)
            seen.add(gid)


# ---- which tests an exercise has -------------------------------------------------------------

def exercises(nb) -> list[str]:
    """The names of the notebook's exercises: its solution cells (named after what they define)."""
    return [c["metadata"]["nbgrader"]["grade_id"] for c in nb["cells"]
            if c["metadata"].get("nbgrader", {}).get("solution")]


def _test_cells(nb):
    return [(c["metadata"]["nbgrader"]["grade_id"], text(c)) for c in nb["cells"]
            if c["cell_type"] == "code" and c["metadata"].get("nbgrader", {}).get("grade")
            and not c["metadata"]["nbgrader"].get("solution")]


def graded_names(nb) -> list[str]:
    """Every name `--only` accepts, in notebook order: the exercises, and what the other tests
    are named after (`test_training_hidden`: training)."""
    known = exercises(nb)
    names = list(known)
    for gid, _ in _test_cells(nb):
        name = exercise_of(gid, known)
        if name not in names:
            names.append(name)
    return names


def select_tests(nb, names) -> tuple:
    """Test ids of the exercises `names`: tests named after one (`test_<name>`, `test_<name>_*`,
    but not those of a longer exercise name such as `Tensor_graph` for `Tensor`), else the test
    cells whose text uses the name."""
    tests = _test_cells(nb)
    known = exercises(nb)
    chosen = []
    for name in names:
        mine = [gid for gid, _ in tests if exercise_of(gid, known) == name]
        mine = mine or [gid for gid, text in tests if re.search(rf"\b{re.escape(name)}\b", text)]
        if not mine:
            raise SystemExit(f"--only {name}: nothing graded in this notebook is called "
                             f"{name!r}; --only accepts: {', '.join(graded_names(nb))}")
        chosen += [gid for gid in mine if gid not in chosen]
    return tuple(chosen)


def exercise_of(test_id: str, names) -> str:
    """The exercise a test belongs to: the longest exercise name it is named after."""
    base = test_id.removeprefix("test_")
    fits = [n for n in names if base == n or base.startswith(n + "_")]
    return max(fits, key=len) if fits else base.removesuffix("_hidden")


# ---- a released copy of the assignment, made once per version of its source -----------------

def _released_copy(root: str, assignment: str, scratch: str):
    """A throwaway course holding `assignment` released (nbgrader generate_assignment, some
    seconds): cached under .course_cache/check/ by a hash of the source and the config."""
    from course_lib.grading import pipeline
    from course_lib.grading.course import CONFIG_FILE, Course
    from course_lib.grading.release import release
    shutil.copy(os.path.join(root, CONFIG_FILE), scratch)
    shutil.copytree(os.path.join(root, "source", assignment),
                    os.path.join(scratch, "source", assignment))
    course = Course(scratch)
    cache = os.path.join(root, pipeline.CACHE, "check", _source_hash(scratch, assignment))
    if os.path.exists(os.path.join(cache, "gradebook.db")):
        shutil.copy(os.path.join(cache, "gradebook.db"), scratch)
        shutil.copytree(os.path.join(cache, "release"), os.path.join(scratch, "release"))
        return course
    release(course, assignment)
    try:
        tmp = cache + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        shutil.copy(os.path.join(scratch, "gradebook.db"), tmp)
        shutil.copytree(os.path.join(scratch, "release"), os.path.join(tmp, "release"))
        shutil.rmtree(cache, ignore_errors=True)
        os.replace(tmp, cache)
    except OSError:
        pass  # a read-only course: no cache, the next check releases again
    return course


def _source_hash(scratch: str, assignment: str) -> str:
    from course_lib.grading.course import CONFIG_FILE
    h = hashlib.sha256()
    with open(os.path.join(scratch, CONFIG_FILE), "rb") as f:
        h.update(f.read())
    folder = os.path.join(scratch, "source", assignment)
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            h.update(os.path.relpath(path, folder).encode() + b"\0")
            with open(path, "rb") as f:
                h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()[:24]


# ---- the report ------------------------------------------------------------------------------

GRADER_NOTE = "### Notes from the grader"  # preprocessors.grader_note, put first by the grader


def _messages(executed) -> tuple[dict, dict]:
    """Each graded cell's position and failure message, from the autograded notebook."""
    order, out = {}, {}
    for i, cell in enumerate(executed.cells if executed is not None else []):
        gid = cellids.grade_id(cell)
        if gid:
            order[gid] = i
        for o in cell.get("outputs", []):
            if gid and o.get("output_type") == "error":
                out[gid] = o.get("evalue") or o.get("ename")
    return order, out


def raised_cells(executed, test_ids) -> list[str]:
    """'cell N (`its first line`) raised Type: message' for each code cell that raised, the
    tests (reported on their own) and the grader's note aside; N counts the notebook's cells."""
    found, number = [], 0
    for cell in executed.cells:
        if cell.cell_type == "markdown" and text(cell).startswith(GRADER_NOTE):
            continue
        number += 1
        if cell.cell_type != "code" or cellids.grade_id(cell) in test_ids:
            continue
        error = next((o for o in cell.get("outputs", []) if o.get("output_type") == "error"), None)
        if error is not None:
            first = next((line.strip() for line in text(cell).splitlines() if line.strip()), "")
            first = first if len(first) <= 60 else first[:57] + "..."
            value = (str(error.get("evalue") or "").strip().splitlines() or [""])[0][:200]
            line = "" if value else _failing_line(error.get("traceback"))
            found.append(f"cell {number} (`{first}`) raised {str(error.get('ename'))[:80]}"
                         + (f": {value}" if value else f" at `{line}`" if line else ""))
    return found


ANSI = re.compile(r"\x1b\[[0-9;]*m")
ARROW = re.compile(r"^-*>\s*\d+\s(.*)$")


def _failing_line(traceback) -> str:
    """The line IPython's traceback points at (`----> 25 assert mse < 0.05`), for an error
    without a message; the last such line, stripped, at most 100 characters."""
    found = ""
    for chunk in traceback if isinstance(traceback, list) else []:
        for raw in ANSI.sub("", str(chunk)).splitlines():
            match = ARROW.match(raw.strip())
            if match:
                found = match.group(1).strip()
    return found if len(found) <= 100 else found[:97] + "..."


def render(cells: dict, messages: dict, verbose: bool, names=(), width: int | None = None,
           raised=()) -> str:
    """Every failing test with its whole message (wrapped), passing ones with -v, every cell
    that raised, and a summary whose last word says what is left to do."""
    width = width or max(40, shutil.get_terminal_size((100, 24)).columns)
    blocks = []
    for q, (earned, possible) in cells.items():
        passed = earned >= possible
        if passed and not verbose:
            continue
        head = f"{'PASS' if passed else 'FAIL'} {q}  {earned:g}/{possible:g}"
        if passed:
            blocks.append(head)
            continue
        message = messages.get(q, "no output (did an earlier cell fail?)")
        blocks.append(head + "\n" + _wrapped(message, width))
    blocks += ["ERROR " + _wrapped(line, width).lstrip() for line in raised]
    earned = sum(s for s, _ in cells.values())
    possible = sum(m for _, m in cells.values())
    revisit = list(dict.fromkeys(exercise_of(q, names) for q, (s, m) in cells.items() if s < m))
    summary = f"score {earned:g}/{possible:g}"
    summary += f"; revisit: {', '.join(revisit)}" if revisit else ""
    if raised:
        numbers = [line.split()[1] for line in raised]
        summary += (f"; cell {numbers[0]} raised {raised[0].split(' raised ', 1)[1].split(':')[0]}"
                    if len(raised) == 1 else f"; cells {', '.join(numbers)} raised errors")
    if not revisit and not raised:
        summary += "; everything passes"
    if not verbose and len(revisit) < len(cells):
        summary += " (-v lists the passing tests too)"
    return "\n".join(blocks + ["", summary]) if blocks else summary


def _wrapped(message: str, width: int) -> str:
    return "\n".join(textwrap.fill(part, width, initial_indent="    ", subsequent_indent="    ",
                                   break_on_hyphens=False)
                     for part in message.splitlines() or [""])
