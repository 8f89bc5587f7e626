"""Grading throughput: plain `nbgrader autograde` vs `course grade` (1 worker, all cores).

    .venv/bin/python bench/grading.py [--students N]

The same synthetic class (N students x 4 assignments: reference, untouched release and a
typical mistake in turn) is graded three ways in one run, each in a fresh copy of the course.
Prints seconds per notebook and the ratios, plus the floor: starting a kernel and importing
numpy, torch and sympy; and the channel: requests the test cells send per notebook under
`course grade`, and what one request costs. Numbers, not assertions: see bench/README.md.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import nbformat
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from harness import ChannelKernel, NOTEBOOKS, make_course, source_path, submit  # noqa: E402

from course_lib.grading import demo, pipeline  # noqa: E402
from course_lib.grading.sandbox import bwrap_available  # noqa: E402

BIN = os.path.dirname(sys.executable)


def synthetic_class(course, students: int) -> int:
    count = 0
    for i in range(students):
        for a in NOTEBOOKS:
            kind = i % 3
            if kind == 0:
                nb = source_path(a)
            elif kind == 1:
                nb = course.path("release", a, NOTEBOOKS[a] + ".ipynb")
            else:
                nb = demo.with_mistake(nbformat.read(source_path(a), as_version=4), a)
            submit(course, f"student{i:03d}", a, nb)
            count += 1
    return count


def plain_nbgrader(course) -> float:
    env = dict(os.environ, PATH=BIN + os.pathsep + os.environ["PATH"])
    start = time.monotonic()
    for a in NOTEBOOKS:
        subprocess.run([os.path.join(BIN, "nbgrader"), "autograde", a, "--force"],
                       cwd=course.root, env=env, check=True, capture_output=True)
    return time.monotonic() - start


CALLS: dict[str, list[int]] = {}


def course_grade(course, workers: int, sandbox=None) -> float:
    start = time.monotonic()
    report = pipeline.grade(course, workers=workers, sandbox=sandbox, progress=False)
    assert report.count("failed") == 0, report.summary()
    seconds = time.monotonic() - start
    for dirpath, _, files in os.walk(course.path(pipeline.CACHE, "results")):
        for name in files:
            with open(os.path.join(dirpath, name)) as f:
                CALLS.setdefault(os.path.basename(dirpath), []).append(json.load(f)["calls"])
    return seconds


def channel_request_ms(n: int = 500) -> float:
    """Milliseconds per request: call a notebook function with a (5, 3) array, get an array back."""
    kernel = ChannelKernel("def f(x):\n    return 2 * x\n")
    try:
        from course_lib.channel.proxy import Session
        session = Session(kernel.folder, 0, lambda number: None, kernel.close)
        f, x = session.name("f"), np.ones((5, 3))
        f(x)
        start = time.perf_counter()
        for _ in range(n):
            f(x)
        seconds = time.perf_counter() - start
        session.close()
    finally:
        kernel.close()
    return 1000 * seconds / n


def kernel_floor(repeats: int = 3) -> float:
    """Seconds to start a kernel and import numpy, torch and sympy (the least any grader pays)."""
    from jupyter_client.manager import start_new_kernel
    times = []
    for _ in range(repeats):
        start = time.monotonic()
        km, kc = start_new_kernel(kernel_name="python3")
        kc.execute_interactive("import numpy, torch, sympy", timeout=120)
        times.append(time.monotonic() - start)
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    return min(times)


def limits_ms(n: int = 20) -> float:
    """Milliseconds per notebook to set up and tear down its limits: cgroups and the tmpfs."""
    from course_lib.grading.sandbox import Cgroups, Limits, Scratch
    start = time.perf_counter()
    for _ in range(n):
        scratch, groups = Scratch(Limits().scratch_bytes), Cgroups(Limits())
        groups.destroy()
        scratch.remove()
    return 1000 * (time.perf_counter() - start) / n


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--students", type=int, default=3)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    runs = {}
    for name, grade in [("plain nbgrader autograde (serial)", plain_nbgrader),
                        ("course grade --workers 1 --no-sandbox",
                         lambda c: course_grade(c, 1, sandbox=False)),
                        ("course grade --workers 1", lambda c: course_grade(c, 1)),
                        (f"course grade --workers {cores}", lambda c: course_grade(c, cores))]:
        root = tempfile.mkdtemp(prefix="bench-grading-")
        course = make_course(root)
        notebooks = synthetic_class(course, args.students)
        runs[name] = grade(course) / notebooks
        print(f"{name:<36} {runs[name]:6.2f} s/notebook ({notebooks} notebooks)", flush=True)
        shutil.rmtree(root, ignore_errors=True)
    floor = kernel_floor()
    plain = runs["plain nbgrader autograde (serial)"]
    print(f"{'floor: kernel + numpy/torch/sympy':<36} {floor:6.2f} s")
    print(f"sandbox: {'bubblewrap' if bwrap_available() else 'NOT available (unsandboxed)'}; "
          f"cores: {cores}")
    for name, seconds in runs.items():
        print(f"  {name:<34} {seconds / plain:5.2f}x the time of plain nbgrader")
    print(f"limits: {limits_ms():.1f} ms per notebook to set up and remove its cgroups and tmpfs")
    request = channel_request_ms()
    print(f"channel: {request:.2f} ms per request (a notebook function called with an array)")
    for assignment, calls in sorted(CALLS.items()):
        print(f"  {assignment:<22} {max(calls):5d} requests per notebook (most), "
              f"~{max(calls) * request / 1000:.1f} s of channel time")


if __name__ == "__main__":
    main()
