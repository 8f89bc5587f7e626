"""A learner's check, timed against `python -c "import torch"` in the same run: the in-notebook
check of `Tensor` step (a), `course check --only Tensor` cold (`--cold`: everything started in
the command) and warm (the kept-warm helper that the first check left, as a learner trying
variants meets it; median of 3), the full check and `jupyter nbconvert --execute` of a solved
notebook 04 (best of two, taking turns); then where the time of both `--only` rows goes. One
run each otherwise (the release of the full check is cached first). The helper lives in a runtime folder of the
bench's own and is stopped at the end.

    .venv/bin/python bench/check.py
"""
from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
NOTEBOOK = os.path.join(REPO, "source", "04_autodiff_engine", "autodiff_engine.ipynb")
TARGETS = {"notebook": 0.3, "only": 1.5, "only/full": 0.3, "full/nbconvert": 1.0}
WARM_RUNS = 3


def timed(args, cwd):
    """Wall seconds of a command, and its stderr; a failing command stops the bench."""
    start = time.monotonic()
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    seconds = time.monotonic() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return seconds, result.stderr


def in_notebook(work):
    """Seconds of `check("Tensor")` in a kernel that ran the notebook up to step (a)'s visible
    test, as a learner's would have; first call and a repeat after re-running the class."""
    from jupyter_client import KernelManager
    with open(NOTEBOOK) as f:
        cells = json.load(f)["cells"]
    upto = next(i for i, c in enumerate(cells)
                if c["metadata"].get("nbgrader", {}).get("grade_id") == "test_Tensor")
    km = KernelManager()
    km.start_kernel(cwd=work)
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=120)
    try:
        for cell in cells[:upto + 1]:
            if cell["cell_type"] == "code":
                run(kc, "".join(cell["source"]))
        tensor_cell = next(c for c in cells if c["metadata"].get("nbgrader", {})
                           .get("grade_id") == "Tensor")
        line = 'from course_lib.selfstudy import check; check("Tensor")'
        first = run(kc, line)
        run(kc, "".join(tensor_cell["source"]))  # the learner edits and re-runs one cell
        again = run(kc, line)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    return first, again


def run(kc, code):
    """Execute `code`, wait for it; its wall seconds (an error stops the bench)."""
    start = time.monotonic()
    msg_id = kc.execute(code)
    output = []
    while True:
        try:
            msg = kc.get_iopub_msg(timeout=300)
        except queue.Empty:
            raise SystemExit(f"no answer from the kernel for {code[:60]!r}") from None
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "error":
            raise SystemExit(f"{code[:60]!r} raised {content['ename']}: {content['evalue']}")
        if kind == "stream":
            output.append(content["text"])
        if kind == "status" and content["execution_state"] == "idle":
            break
    if "check(" in code and "everything passes" not in "".join(output):
        raise SystemExit("the in-notebook check did not pass:\n" + "".join(output))
    return time.monotonic() - start


def warm_checks(course, work):
    """Seconds of `--only Tensor` answered by the helper (each once its fresh kernel is
    ready, as a learner's next check after reading the last one), median; its timings."""
    from course_lib.grading import warm
    timed(course + ["--only", "Tensor"], work)  # cold: leaves the helper behind
    runs = []
    for _ in range(WARM_RUNS):
        wait_ready(warm)
        seconds, stderr = timed(course + ["--only", "Tensor", "--timings"], work)
        if "kept ready" not in stderr:
            raise SystemExit("the check was not answered by the helper:\n" + stderr)
        runs.append((seconds, stderr))
    return sorted(runs)[len(runs) // 2]


def wait_ready(warm, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = warm.ask(REPO, None, "status")
        if answer and answer.get("ready"):
            return
        time.sleep(0.2)
    raise SystemExit("the check helper did not get its kernel ready")


def main():
    work = tempfile.mkdtemp(prefix="bench-check-")
    os.environ["COURSE_RUNTIME_DIR"] = runtime = tempfile.mkdtemp(prefix="bench-rt-")
    os.environ.pop("COURSE_CHECK_COLD", None)
    try:
        mine = os.path.join(work, "solved.ipynb")
        shutil.copy(NOTEBOOK, mine)
        course = [os.path.join(BIN, "course"), "--root", REPO, "check", mine]
        timed(course + ["--only", "Tensor_graph", "--cold"], work)  # warm the disk cache
        timed(course + ["--only", "Tensor", "--cold"], work)
        torch, _ = timed([sys.executable, "-c", "import torch"], work)
        bare, _ = timed([sys.executable, "-c", "pass"], work)
        first, again = in_notebook(work)
        only, stderr = timed(course + ["--only", "Tensor", "--timings", "--cold"], work)
        warm_only, warm_stderr = warm_checks(course, work)
        stop_helpers()
        timed(course + ["--only", "Tensor_graph", "--cold"], work)
        nbconvert_args = [os.path.join(BIN, "jupyter"), "nbconvert", "--to", "notebook",
                          "--execute", "--output", os.path.join(work, "out.ipynb"), mine]
        # taking turns, best of two: the first full run after a quiet spell reads what the
        # shorter checks never touched, which would otherwise count against it alone
        full_runs, nbconvert_runs = [], []
        for _ in range(2):
            full_runs.append(timed(course, work)[0])
            nbconvert_runs.append(timed(nbconvert_args, work)[0])
        full, nbconvert = min(full_runs), min(nbconvert_runs)
    finally:
        stop_helpers()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(runtime, ignore_errors=True)
    rows = [
        ("python -c 'import torch'", torch, "1.00x torch", ""),
        ('check("Tensor") in the notebook', first, f"{first / torch:.2f}x torch",
         f"target <= {TARGETS['notebook']}"),
        ("  again, after re-running a cell", again, f"{again / torch:.2f}x torch", ""),
        ("course check --only Tensor --cold", only, f"{only / torch:.2f}x torch",
         f"target <= {TARGETS['only']}"),
        ("  --cold / full check", only, f"{only / full:.2f}", f"target <= "
         f"{TARGETS['only/full']}"),
        ("course check --only Tensor, warm", warm_only, f"{warm_only / torch:.2f}x torch",
         f"target <= {TARGETS['only']}"),
        ("  warm / full check", warm_only, f"{warm_only / full:.2f}", f"target <= "
         f"{TARGETS['only/full']}"),
        ("course check (full)", full, f"{full / nbconvert:.2f}x nbconvert",
         f"target <= {TARGETS['full/nbconvert']}"),
        ("jupyter nbconvert --execute", nbconvert, "", ""),
        ("python -c pass", bare, "", ""),
    ]
    for label, seconds, ratio, target in rows:
        print(f"{label:<36} {seconds:6.2f} s   {ratio:<20} {target}")
    print("\nwhere --only Tensor's time goes (`course check --timings`). Cold: the kernel "
          "starts at once, in parallel with reading and imports; torch loads in a thread once "
          "it is launched; the kernel's phases run one after the other. Warm: the helper had "
          "the grader's side imported and a fresh kernel with the notebook's first imports "
          "done; process start is the command's own, up to reaching the helper:")
    for label, text in (("cold", stderr), ("warm", warm_stderr)):
        line = next((l for l in text.splitlines() if l.startswith("timings: ")), "")
        print(f" {label}:")
        for part in line.removeprefix("timings: ").split(", "):
            print(f"  {part}")


def stop_helpers():
    """Stop the helper the bench's checks left behind (its own runtime folder)."""
    from course_lib.grading import warm
    warm.ask(REPO, None, "stop")


if __name__ == "__main__":
    main()
