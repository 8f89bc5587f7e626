"""The `course` command: the instructor's loop and the learner's check, on nbgrader's API."""
from __future__ import annotations

import argparse
import os
import sys

VERBS = {}


def verb(name, help_text):
    def register(fn):
        VERBS[name] = (fn, help_text)
        return fn
    return register


def _course(args):
    from course_lib.grading.course import Course
    os.umask(0o077)  # all a verb writes about students is owner-only from the first command
    return Course(args.root, db_url=args.db)


def _students(course, args):
    """The students a verb acts on (None: everyone), minus withdrawn ones; unknown ids are errors."""
    known = course.students()
    unknown = [s for s in args.student or () if s not in known]
    if unknown:
        raise SystemExit(f"unknown student {unknown[0]!r}: not in the gradebook and no folder "
                         "submitted/" + unknown[0])
    excluded = _excluded(course, args)
    if not excluded:
        return args.student
    chosen = [s for s in (args.student or sorted(known)) if s not in excluded]
    if not chosen:
        raise SystemExit("no student left to act on (all are excluded or withdrawn)")
    return chosen


def _excluded(course, args) -> set:
    unknown = [s for s in getattr(args, "exclude", None) or () if s not in course.students()]
    if unknown:
        raise SystemExit(f"unknown student {unknown[0]!r} in --exclude")
    return course.withdrawn() | set(getattr(args, "exclude", None) or ())


def _table(course, args, assignment=None):
    from course_lib.grading import pipeline, report
    excluded = _excluded(course, args)
    scores = {k: v for k, v in pipeline.scores(course, assignment).items()
              if k[0] not in excluded}
    return report.score_table(scores, report.question_order(course),
                              verbose=getattr(args, "verbose", False))


def _assignments(course, assignment, released=False):
    """[assignment] checked to be in source/ (and with `released`, in the gradebook: verbs
    that read or write its gradebook record); None: every assignment in source/."""
    if assignment is None:
        return course.assignments()
    if assignment not in course.assignments():
        raise SystemExit(f"unknown assignment {assignment!r}; known: {', '.join(course.assignments())}")
    if released:
        from course_lib.grading.report import released as handed_out
        if assignment not in handed_out(course):
            raise SystemExit(f"{assignment} is not released yet (it is in source/ but not in the "
                             f"gradebook): run `course release {assignment}` first")
    return [assignment]


@verb("release", "generate the student versions into release/ (nbgrader generate_assignment)")
def cmd_release(args):
    from course_lib.grading import release
    course = _course(args)
    for a in _assignments(course, args.assignment):
        release.release(course, a)
        print(f"released {a} -> release/{a}/")


@verb("grade", "autograde everything in submitted/ (sandboxed, parallel, resumable)")
def cmd_grade(args):
    from course_lib.grading import cluster
    scheduler = _scheduler(args)  # first: a refused scheduler costs no time
    from course_lib.grading import pipeline, report
    from course_lib.grading.sandbox import Limits
    course = _course(args)
    if args.assignment:
        _assignments(course, args.assignment, released=True)
    students = _students(course, args)
    limits = Limits(cell_timeout=args.timeout, notebook_timeout=args.notebook_timeout,
                    memory_bytes=args.memory << 20)
    print(pipeline.mode_line(args.sandbox))
    try:
        result = pipeline.grade(course, args.assignment, students=students,
                                workers=args.workers, scheduler=scheduler, sandbox=args.sandbox,
                                limits=limits, force=args.force, progress=not args.quiet)
    except cluster.ClusterError as e:
        raise SystemExit(str(e))
    print(result.summary())
    from course_lib.grading.lms import id_warnings
    print("".join(f"  warning: {w}\n" for w in id_warnings(course.students())), end="")
    print(_table(course, args, args.assignment))
    return 1 if result.count("failed") else 0


def _scheduler(args):
    """The checked cluster to grade on (None: local processes); refused before any work."""
    from course_lib.grading import cluster
    if not args.scheduler:
        if args.tls_ca or args.tls_cert or args.tls_key or args.insecure_scheduler:
            raise SystemExit("--tls-* and --insecure-scheduler go with --scheduler")
        return None
    scheduler = cluster.Scheduler(args.scheduler, args.tls_ca, args.tls_cert, args.tls_key,
                                  args.insecure_scheduler)
    try:
        cluster.check(scheduler)
        if scheduler.scheme == "tls":
            cluster.security(scheduler)
    except cluster.ClusterError as e:
        raise SystemExit(str(e))
    return scheduler


@verb("cluster-certs", "make a private CA and TLS certificates for grading on a Dask cluster")
def cmd_cluster_certs(args):
    from course_lib.grading import cluster
    try:
        paths = cluster.make_certs(args.folder, hosts=args.host or (), days=args.days)
    except cluster.ClusterError as e:
        raise SystemExit(str(e))
    d = os.path.relpath(args.folder)
    print(f"wrote a private CA and scheduler, worker and client certificates to {d}/\n"
          f"keep {os.path.relpath(paths['ca_key'])} off the cluster (it signs new members)\n\n"
          f"scheduler: dask scheduler --protocol tls --port 8786 --no-dashboard "
          f"--tls-ca-file ca.pem --tls-cert scheduler.pem --tls-key scheduler-key.pem\n"
          f"workers:   dask worker tls://SCHEDULER:8786 --nworkers 8 --nthreads 1 "
          f"--tls-ca-file ca.pem --tls-cert worker.pem --tls-key worker-key.pem\n"
          f"grading:   course grade --scheduler tls://SCHEDULER:8786 --tls-ca {d}/ca.pem "
          f"--tls-cert {d}/client.pem --tls-key {d}/client-key.pem")


@verb("feedback", "write feedback/<student>/<assignment>/<notebook>.html (no hidden tests shown)")
def cmd_feedback(args):
    from course_lib.grading import feedback
    course = _course(args)
    if args.assignment:
        _assignments(course, args.assignment, released=True)
    written = feedback.generate(course, args.assignment, students=_students(course, args))
    print(f"wrote {len(written)} feedback page(s) under feedback/")


@verb("export", "write grades.csv (and grades.png) at the course root")
def cmd_export(args):
    from course_lib.grading import report
    course = _course(args)
    path = report.export(course, exclude=_excluded(course, args))
    print(f"wrote {os.path.relpath(path)}")


@verb("due", "show or set an assignment's due date (in the gradebook, as nbgrader keeps it)")
def cmd_due(args):
    from course_lib.grading import late
    course = _course(args)
    (a,) = _assignments(course, args.assignment, released=True)
    if args.clear or args.when:
        late.set_due(course, a, None if args.clear else args.when)
    when = late.due(course, a)
    print(f"{a}: due {when:%Y-%m-%d %H:%M:%S} UTC" if when else f"{a}: no due date")
    for student, extension in sorted(late.extensions(course, a).items()):
        print(f"  {student}: extension of {extension}")


@verb("extend", "give a student an extension on an assignment (0 days removes it)")
def cmd_extend(args):
    from course_lib.grading import late
    course = _course(args)
    (a,) = _assignments(course, args.assignment, released=True)
    new = args.student_id not in course.students()
    late.extend(course, args.student_id, a, days=args.days, hours=args.hours)
    print(f"{args.student_id}/{a}: " + (f"extension of {args.days:g} day(s) {args.hours:g} "
                                        "hour(s)" if args.days or args.hours else "no extension")
          + "; it counts from the next `course grade`")
    if new:  # an extension before the first hand-in is fine; a misspelt id is not
        print(f"  note: {args.student_id!r} is new to the course (not in the gradebook, no "
              f"submitted/{args.student_id}): added; check the spelling")


@verb("secret", "say where the grading secret is and how old (never print it); --rotate: a new one")
def cmd_secret(args):
    course = _course(args)
    if args.rotate:
        path, backup = course.rotate_secret()
        print(f"wrote a new grading secret to {path} (mode 0600)"
              + (f"; the old one is kept in {backup} (mode 0600)" if backup else ""))
        print("grading inputs derive from it: the next `course grade` draws new inputs and runs "
              "every notebook again (cached runs were dropped)")
        return 0
    print(course.secret_status())
    return 0


@verb("demo", "the whole instructor loop on a made-up class, then a score table")
def cmd_demo(args):
    from course_lib.grading import demo
    return demo.run(root=args.root, workers=args.workers, sandbox=args.sandbox)


@verb("check", "grade your own notebook with the hidden tests (self-study; no gradebook)")
def cmd_check(args):
    from course_lib.grading.course import find_root, package_course
    root = args.root or (find_root() if _in_a_course() else package_course()) or find_root()
    only = tuple(args.only or ())
    helped = bool(only) and not args.watch and not args.cold
    if helped:
        from course_lib.grading import warm
        helped = warm.wanted()
        code = warm.check_warm(args.notebook, root, args.sandbox, args.verbose, only,
                               args.timings) if helped else None
        if code is not None:
            return code
    from course_lib.grading import selfcheck  # after the helper: it imports numpy
    run = selfcheck.watch if args.watch else selfcheck.check
    code = run(args.notebook, root=root, sandbox=args.sandbox, verbose=args.verbose,
               only=only, timings=args.timings)
    if helped and selfcheck.last_assignment:
        warm.start_helper(root, args.sandbox, selfcheck.last_assignment)
    return code


def _in_a_course() -> bool:
    from course_lib.grading.course import find_root
    try:
        find_root()
    except SystemExit:
        return False
    return True


@verb("walkthrough", "build the static HTML walkthrough of the solved notebooks")
def cmd_walkthrough(args):
    from course_lib import walkthrough
    from course_lib.grading.course import find_root
    from course_lib.grading.course import checked_root
    out = walkthrough.build(checked_root(args.root) if args.root else find_root(), args.output)
    print(f"walkthrough written to {out}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="course", description="Backprop from Scratch: release, grade, feedback, export, "
        "demo; and `course check` for learners.")
    parser.add_argument("--root", help="course folder (default: found from the current folder)")
    parser.add_argument("--db", help="gradebook URL (default: sqlite:///<root>/gradebook.db; "
                        "e.g. postgresql+psycopg2://user@host/db)")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for name, (fn, help_text) in VERBS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(fn=fn)
        if name in ("release", "grade", "feedback"):
            p.add_argument("assignment", nargs="?", help="one assignment (default: all)")
        if name in ("grade", "feedback"):
            p.add_argument("--student", action="append", help="only this student (repeatable)")
        if name in ("grade", "feedback", "export"):
            p.add_argument("--exclude", action="append", metavar="STUDENT",
                           help="leave this student out (repeatable); withdrawn students can "
                           "also be listed in withdrawn.txt, one id per line")
        if name == "grade":
            p.add_argument("-v", "--verbose", action="store_true",
                           help="the score of every question, not only totals")
        if name in ("grade", "demo"):
            p.add_argument("--workers", type=int, default=0,
                           help="parallel sandboxes (default: number of cores)")
        if name == "grade":
            p.add_argument("--scheduler", help="Dask scheduler address (tls://host:8786) to "
                           "grade on a cluster; default: local processes")
            p.add_argument("--tls-ca", help="CA certificate of the cluster (PEM; default: "
                           "Dask's distributed.comm.tls.ca-file)")
            p.add_argument("--tls-cert", help="this client's certificate (PEM; default: Dask's "
                           "distributed.comm.tls.client.cert)")
            p.add_argument("--tls-key", help="this client's key (PEM; default: Dask's "
                           "distributed.comm.tls.client.key)")
            p.add_argument("--insecure-scheduler", action="store_true",
                           help="allow a plain tcp:// scheduler: whoever reaches it can run code "
                           "on the workers and forge results")
            p.add_argument("--timeout", type=int, default=60, help="seconds per cell (60)")
            p.add_argument("--notebook-timeout", type=int, default=300,
                           help="seconds per notebook, all cells and tests (300)")
            p.add_argument("--memory", type=int, default=4096,
                           help="megabytes of memory for each sandbox, all its processes (4096)")
            p.add_argument("--force", action="store_true", help="re-execute even cached results")
            p.add_argument("--quiet", action="store_true", help="no progress bar")
        if name == "due":
            p.add_argument("assignment", help="the assignment")
            p.add_argument("when", nargs="?", help="due date, e.g. '2026-03-01 17:00:00 "
                           "Europe/Paris' (no zone: UTC); without it: show the due date")
            p.add_argument("--clear", action="store_true", help="remove the due date")
        if name == "extend":
            p.add_argument("student_id", metavar="student", help="the student")
            p.add_argument("assignment", help="the assignment")
            p.add_argument("--days", type=float, default=0.0, help="days of extension")
            p.add_argument("--hours", type=float, default=0.0, help="hours of extension")
        if name == "check":
            p.add_argument("notebook", help="path to your notebook (any file name)")
            p.add_argument("-v", "--verbose", action="store_true",
                           help="list the passing tests too")
            p.add_argument("--only", action="append", metavar="NAME",
                           help="check just this exercise (the function or class it asks for, "
                           "e.g. --only Tensor); repeatable. Runs the notebook only as far as "
                           "its tests, skipping other exercises' tests and demo cells")
            p.add_argument("--timings", action="store_true",
                           help="print where the time went (to stderr)")
            p.add_argument("--watch", action="store_true",
                           help="check again each time the notebook is saved (Ctrl-C stops)")
            p.add_argument("--cold", action="store_true",
                           help="with --only: check in this process, not with the kept-warm "
                           "helper (also COURSE_CHECK_COLD=1)")
        if name == "cluster-certs":
            p.add_argument("folder", help="where to write them (a new or empty folder)")
            p.add_argument("--host", action="append", help="a host name or IP address of the "
                           "scheduler or a worker, added to the certificates (repeatable)")
            p.add_argument("--days", type=int, default=365, help="validity in days (365)")
        if name == "secret":
            p.add_argument("--rotate", action="store_true", help="make a new secret (after a "
                           "leak, or at the start of a term); the old one is kept as a backup")
        if name == "walkthrough":
            p.add_argument("--output", default=None, help="folder (default: <root>/walkthrough)")
        if name in ("grade", "demo", "check"):
            g = p.add_mutually_exclusive_group()
            g.add_argument("--sandbox", dest="sandbox", action="store_true", default=None,
                           help="require the bubblewrap sandbox")
            g.add_argument("--no-sandbox", dest="sandbox", action="store_false",
                           help="run kernels unsandboxed (trusted notebooks only)")
    return parser


def quiet_dependencies(sqlalchemy: bool = True) -> None:
    """Dependencies' warnings (SQLAlchemy's notes on nbgrader's models, deprecations) are not
    for a TA: they would read as problems with the class. `sqlalchemy=False`: not yet (its
    import costs `course check --only`, which never uses it, half a second)."""
    import warnings
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    if not sqlalchemy:
        return
    try:
        from sqlalchemy.exc import SAWarning
    except ImportError:
        return
    warnings.filterwarnings("ignore", category=SAWarning)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    quiet_dependencies(sqlalchemy=args.verb != "check")  # check: once it imports nbgrader
    code = int(args.fn(args) or 0)
    if argv is None and args.verb == "check":
        _exit_now(code)
    return code


def _exit_now(code: int) -> None:
    """Leave without the interpreter's teardown: with torch loaded it costs a learner's check
    over a second after its answer is printed (everything the check made is removed already)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
