"""`course check` speed: `--only Tensor` and the full check of a solved notebook 04, against
`jupyter nbconvert --execute` of the same notebook. One run each (the release is cached first).

    .venv/bin/python bench/check.py
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
NOTEBOOK = os.path.join(REPO, "source", "04_autodiff_engine", "autodiff_engine.ipynb")


def timed(args, cwd):
    start = time.monotonic()
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    seconds = time.monotonic() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return seconds


def main():
    work = tempfile.mkdtemp(prefix="bench-check-")
    try:
        mine = os.path.join(work, "solved.ipynb")
        shutil.copy(NOTEBOOK, mine)
        course = [os.path.join(BIN, "course"), "--root", REPO, "check", mine]
        timed(course + ["--only", "Tensor_graph"], work)  # warm: the cached release
        only = timed(course + ["--only", "Tensor"], work)
        full = timed(course, work)
        nbconvert = timed([os.path.join(BIN, "jupyter"), "nbconvert", "--to", "notebook",
                           "--execute", "--output", os.path.join(work, "out.ipynb"), mine], work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"course check --only Tensor   {only:6.1f} s   {only / full:.2f}x the full check "
          "(target <= 0.4)")
    print(f"course check (full)          {full:6.1f} s   {full / nbconvert:.2f}x nbconvert "
          "(target <= 1.3)")
    print(f"jupyter nbconvert --execute  {nbconvert:6.1f} s")


if __name__ == "__main__":
    main()
