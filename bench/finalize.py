"""Grading at scale: wall time per notebook and the instructor's process's share of it.

    .venv/bin/python bench/finalize.py [--tiny 40 160 640] [--real 20] [--dask 160]
                                       [--before FOLDER]

Grades, sandboxed, with `--workers 2`: N copies of the tiny one-exercise notebook of
tests/harness.py (mixed right and wrong answers), and a class of `--real` students times the
five real notebooks (reference, untouched release and a typical mistake in turn); `--dask`
grades the tiny class of that size on a Dask LocalCluster of 2 worker processes (its
scheduler runs in the measured process, as a client's would not). Every measurement runs in
a fresh interpreter (imports done before the clock starts) and prints wall seconds per
notebook, the main process's CPU seconds per notebook (every thread: the pool's feeder, the
Dask client and scheduler) and that CPU's share of the wall time.

`--steps N` grades N tiny notebooks serially, then times the trusted side's three steps per
notebook on them again from the cache: prepare and build (a finalizer process's work) and
the batched gradebook write (the instructor's process's), CPU milliseconds per notebook.

`--before FOLDER` also runs every measurement with FOLDER (an export of an older
`course_lib`, e.g. `git archive HEAD~3 course_lib | tar -x -C FOLDER`) first on PYTHONPATH,
the two taking turns, so ratios come from one run on one (shared) machine.
Numbers, not assertions: see bench/README.md.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.join(HERE, "..", "tests")


def _tiny_class(course, students: int) -> int:
    from harness import CORRECT, WRONG, submission, submit
    for i in range(students):
        submit(course, f"s{i:04d}", "tiny", submission(WRONG if i % 4 == 3 else CORRECT),
               name="tiny.ipynb")
    return students


def _real_class(course, students: int) -> int:
    sys.path.insert(0, HERE)
    from grading import synthetic_class
    return synthetic_class(course, students)


def measure(kind: str, size: int, workers: int, dask: bool) -> dict:
    """Grade one fresh class in this process; wall and this process's CPU, per notebook."""
    sys.path.insert(0, TESTS)
    from harness import make_course, make_tiny_course
    from course_lib.grading import pipeline
    from course_lib.grading.sandbox import Limits
    with tempfile.TemporaryDirectory(prefix="bench-finalize-") as root:
        if kind == "tiny":
            course = make_tiny_course(root)
            notebooks = _tiny_class(course, size)
        else:
            course = make_course(root)
            notebooks = _real_class(course, size)
        scheduler, close = _dask_cluster(workers) if dask else (None, lambda: None)
        try:
            wall, cpu = time.monotonic(), time.process_time()
            report = pipeline.grade(course, None if kind == "real" else "tiny",
                                    workers=workers, scheduler=scheduler, sandbox=True,
                                    progress=False, limits=Limits(cell_timeout=60))
            wall, cpu = time.monotonic() - wall, time.process_time() - cpu
        finally:
            close()
        assert report.count("failed") == 0, report.summary()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return {"notebooks": notebooks, "wall": wall / notebooks, "cpu": cpu / notebooks,
                "share": cpu / wall, "peak_mb": peak}


def steps(n: int) -> None:
    """CPU ms per notebook of prepare, build (finalizer) and write (main), on cached runs."""
    sys.path.insert(0, TESTS)
    from harness import CORRECT, make_tiny_course, submission, submit
    from course_lib.grading import pipeline
    from course_lib.grading.finalize import Finished, GradebookWriter
    from course_lib.grading.sandbox import Limits
    limits = Limits(cell_timeout=60)
    with tempfile.TemporaryDirectory(prefix="bench-finalize-") as root:
        course = make_tiny_course(root)
        names = [f"s{i:04d}" for i in range(n)]
        for name in names:
            submit(course, name, "tiny", submission(CORRECT), name="tiny.ipynb")
        pipeline.grade(course, "tiny", workers=1, sandbox=True, progress=False, limits=limits)
        station = pipeline.Station(pipeline.Setup(course.root, course.db_url, limits, True))
        cache = pipeline.ResultCache(course.path(pipeline.CACHE, "results"))
        cpu = time.process_time()
        jobs = [station.prepare(name, "tiny") for name in names]
        prepare = time.process_time() - cpu
        for job in jobs:
            for task in job.tasks:
                pipeline.execute_done(job, cache.get(task))
        finished = [Finished(j.student, j.assignment, [], dict(j.done), j.expected) for j in jobs]
        cpu = time.process_time()
        records = [station.build(f) for f in finished]
        build = time.process_time() - cpu
        writer = GradebookWriter(course)
        cpu = time.process_time()
        writer.write(records)
        write = time.process_time() - cpu
        writer.close()
        station.close()
    print(f"per tiny notebook: prepare {1000 * prepare / n:.1f} ms, build {1000 * build / n:.1f}"
          f" ms (finalizer); write {1000 * write / n:.2f} ms (main, one batch of {n})")


def _dask_cluster(workers: int):
    from dask.distributed import LocalCluster
    from course_lib.grading.cluster import Scheduler
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           dashboard_address=None)
    return Scheduler(cluster.scheduler_address, insecure=True), cluster.close


def run_child(args, pythonpath: str | None) -> dict:
    """One measurement in a fresh interpreter (with an older course_lib first, if given)."""
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, __file__, "--child", *args], env=env,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"measurement {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", type=int, nargs="*", default=[40, 160, 640])
    parser.add_argument("--real", type=int, default=20, help="students (x 5 notebooks); 0: none")
    parser.add_argument("--dask", type=int, default=160, help="tiny class on Dask; 0: none")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--before", help="an older course_lib's parent folder, to compare")
    parser.add_argument("--steps", type=int, default=0, help="time the trusted steps on N")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps:
        steps(args.steps)
        return
    if args.child:
        kind, size, workers, dask = args.child
        print(json.dumps(measure(kind, int(size), int(workers), dask == "dask")))
        return
    runs = [("tiny", n, "processes") for n in args.tiny]
    runs += [("real", args.real, "processes")] if args.real else []
    runs += [("tiny", args.dask, "dask")] if args.dask else []
    versions = [("before", os.path.abspath(args.before))] if args.before else []
    versions.append(("now", None))
    print(f"{'class':<14} {'executor':<10} {'code':<7} {'notebooks':>9} {'wall s/nb':>9} "
          f"{'main CPU s/nb':>13} {'main share':>10} {'peak MB':>8}", flush=True)
    results = {}
    for kind, size, executor in runs:
        for version, path in versions:
            child = [kind, str(size), str(args.workers), executor]
            r = results[(kind, size, executor, version)] = run_child(child, path)
            label = f"tiny x{size}" if kind == "tiny" else f"{size} x 5 real"
            print(f"{label:<14} {executor:<10} {version:<7} {r['notebooks']:9d} "
                  f"{r['wall']:9.3f} {r['cpu']:13.4f} {r['share']:10.0%} "
                  f"{r['peak_mb']:8.0f}", flush=True)
    _ratios(results, runs, bool(args.before))


def _ratios(results, runs, compared: bool):
    print()
    for kind, size, executor in runs:
        now = results[(kind, size, executor, "now")]
        if compared:
            before = results[(kind, size, executor, "before")]
            print(f"{kind} x{size} {executor}: wall {before['wall'] / now['wall']:.2f}x faster, "
                  f"main CPU {before['cpu'] / now['cpu']:.1f}x less than before")
        if executor == "dask" and (kind, size, "processes", "now") in results:
            local = results[(kind, size, "processes", "now")]
            print(f"{kind} x{size}: Dask LocalCluster wall / --workers wall = "
                  f"{now['wall'] / local['wall']:.2f}")


if __name__ == "__main__":
    main()
