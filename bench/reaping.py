"""Processes left behind by grading: zombies and live sandboxes while a class is graded.

    .venv/bin/python bench/reaping.py [--students 10 40 160] [--workers 2]

For each class size, grades that many copies of the tiny one-exercise notebook (tests/harness)
in a fresh course, sandboxed, while a thread samples this process's descendants from /proc.
Prints the peak number of descendants, zombies, live bwrap and kernel processes, and what is
left once grading returns. Numbers, not assertions: tests/test_reaping.py asserts.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from harness import CORRECT, make_tiny_course, submission, submit  # noqa: E402
from proctree import Sampler, counts, descendants  # noqa: E402

from course_lib.grading import pipeline  # noqa: E402
from course_lib.grading.sandbox import Limits  # noqa: E402


def measure(students: int, workers: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="course-reaping-") as root:
        course = make_tiny_course(root)
        for i in range(students):
            submit(course, f"s{i:03d}", "tiny", submission(CORRECT), name="tiny.ipynb")
        start = time.monotonic()
        with Sampler() as sampler:
            report = pipeline.grade(course, "tiny", workers=workers, sandbox=True,
                                    progress=False, limits=Limits(cell_timeout=60))
        assert report.count("graded") == students, report.summary()
        left = counts(descendants())
        return {"students": students, "seconds": time.monotonic() - start,
                "samples": sampler.samples, **{f"peak {k}": v for k, v in sampler.peak.items()},
                "zombie names": ",".join(sorted(sampler.zombie_names)) or "-",
                "left after": left["descendants"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, nargs="+", default=[10, 40])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    rows = [measure(n, args.workers) for n in args.students]
    keys = list(rows[0])
    print(" | ".join(keys))
    for row in rows:
        print(" | ".join(f"{row[k]:.0f}" if isinstance(row[k], float) else str(row[k])
                         for k in keys))


if __name__ == "__main__":
    main()
