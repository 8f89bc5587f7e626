"""A kept-warm `course check --only`: a small per-user, per-course helper process.

The first `--only` check runs here in the command's own process (cold) and then leaves a
helper behind. The helper has imported the grader's side once (nbformat, the runner, torch,
the checks) and holds ONE fresh sandboxed kernel that has imported only the modules of the
checked notebook's first cell (the course's text; no learner cell has run in it). The next
`--only` check of that user and course is sent to the helper, which runs the very same
`selfcheck.check` with that kernel and streams its output back; then it throws the kernel
away and prepares a fresh one: a kernel serves exactly one check.

Safety: the socket lives in the user's own runtime folder (mode 0700, owned by the user, not
a symlink), is mode 0600, and both ends check the other's uid (SO_PEERCRED): another user's
command is refused, and a command never talks to a socket it did not find safe (it checks
cold instead). The helper exits by itself after COURSE_CHECK_IDLE seconds (600) without a
check; its kernel dies with it (bwrap --die-with-parent). `--cold` or COURSE_CHECK_COLD=1
bypass it.

This module is imported by the command before anything heavy: its top imports are the
standard library's only.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import stat
import struct
import subprocess
import sys
import time

COLD_ENV = "COURSE_CHECK_COLD"
IDLE_ENV = "COURSE_CHECK_IDLE"
DIR_ENV = "COURSE_RUNTIME_DIR"
IDLE_SECONDS = 600.0
MAX_FRAME = 16 << 20


# ---- where the helper listens ------------------------------------------------------------------

def runtime_dir(create: bool = True) -> str | None:
    """The user's own folder for the helper's socket, or None where it is not safe."""
    base = os.environ.get(DIR_ENV)
    if not base:
        xdg = os.environ.get("XDG_RUNTIME_DIR")
        base = os.path.join(xdg, "course") if xdg and _safe_dir(xdg) else \
            os.path.join("/tmp", f"course-{os.getuid()}")
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(base, 0o700)
    return base if _safe_dir(base) else None


def _safe_dir(path: str) -> bool:
    """A real folder (not a symlink) owned by this user that nobody else can enter."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return (stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()
            and stat.S_IMODE(info.st_mode) & 0o077 == 0)


def _fingerprint() -> str:
    """This install of course_lib: where it is and when its code last changed (a changed
    course_lib gets a new helper; the old one idles out)."""
    import course_lib
    top = os.path.dirname(os.path.realpath(course_lib.__file__))
    newest = 0
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for f in filenames:
            if f.endswith(".py"):
                with contextlib.suppress(OSError):
                    newest = max(newest, os.stat(os.path.join(dirpath, f)).st_mtime_ns)
    return f"{top}:{newest}"


def socket_path(root: str, sandbox, folder: str) -> str:
    """The socket of the helper for this course, interpreter, course_lib and sandbox choice."""
    key = json.dumps([os.path.realpath(root), os.path.realpath(sys.prefix), sys.version,
                      _fingerprint(), sandbox])
    return os.path.join(folder, "check-" + hashlib.sha256(key.encode()).hexdigest()[:20] + ".sock")


def wanted() -> bool:
    return os.environ.get(COLD_ENV, "") in ("", "0")


def since_process_start():
    """Seconds since this process started (Linux), else None."""
    try:
        with open("/proc/self/stat") as f:
            started = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - started / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


# ---- frames: 4-byte length, then JSON ----------------------------------------------------------

def send(conn, message: dict) -> None:
    data = json.dumps(message).encode()
    conn.sendall(struct.pack("!I", len(data)) + data)


def receive(conn) -> dict | None:
    """The next frame, or None when the other side closed (or sent garbage)."""
    head = _exactly(conn, 4)
    if head is None:
        return None
    (size,) = struct.unpack("!I", head)
    if size > MAX_FRAME:
        return None
    body = _exactly(conn, size)
    try:
        message = json.loads(body) if body is not None else None
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


def _exactly(conn, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = conn.recv(min(left, 1 << 16))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def peer_uid(conn) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


# ---- the command's side ------------------------------------------------------------------------

def connect(root: str, sandbox, folder: str | None = None):
    """A connection to this user's helper for the course; None if there is none to trust."""
    folder = folder or runtime_dir(create=False)
    if folder is None:
        return None
    path = socket_path(root, sandbox, folder)
    try:
        info = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISSOCK(info.st_mode) or info.st_uid != os.getuid() \
            or stat.S_IMODE(info.st_mode) & 0o077:
        print(f"note: not using the check helper's socket {path}: it is not this user's own "
              "(checking here instead)", file=sys.stderr)
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
        if peer_uid(conn) != os.getuid():
            raise OSError("the helper runs as another user")
    except OSError:
        conn.close()
        return None
    return conn


def request(conn, message: dict, out=None, err=None) -> dict | None:
    """Send one request; print the helper's output as it comes; its last frame, or None if
    the helper went away before answering."""
    out, err = out or sys.stdout, err or sys.stderr
    try:
        send(conn, message)
        while True:
            frame = receive(conn)
            if frame is None:
                return None
            if "out" in frame:
                out.write(str(frame["out"]))
                out.flush()
            elif "err" in frame:
                err.write(str(frame["err"]))
                err.flush()
            else:
                return frame
    except OSError:
        return None
    finally:
        conn.close()


def check_warm(path: str, root: str, sandbox, verbose: bool, only, timings: bool) -> int | None:
    """The check run by the helper; None when no helper answered (the caller checks cold)."""
    began = time.monotonic()
    conn = connect(root, sandbox)
    if conn is None:
        return None
    start = (since_process_start() or 0.0) + time.monotonic() - began
    import shutil
    answer = request(conn, {"op": "check", "path": path, "cwd": os.getcwd(),
                            "verbose": verbose, "only": list(only), "timings": timings,
                            "width": shutil.get_terminal_size((100, 24)).columns,
                            "started": start})
    if answer is None or "exit" not in answer:
        why = (answer or {}).get("crashed") or (answer or {}).get("refused") or "it stopped"
        print(f"note: the check helper did not answer ({str(why)[:300]}); checking here "
              "instead", file=sys.stderr)
        return None
    return int(answer["exit"])


def start_helper(root: str, sandbox, assignment: str) -> None:
    """Leave a helper behind for the next check (nothing if one runs or it cannot start)."""
    folder = runtime_dir()
    if folder is None:
        return
    path = socket_path(root, sandbox, folder)
    log = os.open(path[:-5] + ".log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        subprocess.Popen([sys.executable, "-m", "course_lib.grading.warm", root,
                          json.dumps(sandbox), assignment], cwd=folder, start_new_session=True,
                         stdin=subprocess.DEVNULL, stdout=log, stderr=log, close_fds=True)
    except OSError:
        pass
    finally:
        os.close(log)


def ask(root: str, sandbox, op: str, folder: str | None = None) -> dict | None:
    """A helper's answer to `status` or `stop` (None: no helper)."""
    conn = connect(root, sandbox, folder)
    return request(conn, {"op": op}) if conn is not None else None


# ---- the helper's side -------------------------------------------------------------------------

class Helper:
    """Serves `--only` checks of one user and course, one at a time, each with a fresh kernel."""

    def __init__(self, root: str, sandbox, assignment: str):
        self.root, self.sandbox, self.assignment = root, sandbox, assignment
        self.folder = runtime_dir()
        if self.folder is None:
            raise SystemExit("no safe runtime folder for the check helper")
        self.path = socket_path(root, sandbox, self.folder)
        self.idle = float(os.environ.get(IDLE_ENV) or IDLE_SECONDS)
        self.spare = None

    def serve(self) -> None:
        """Listen until idle (or stopped); only one helper per socket (a lock file)."""
        import fcntl  # POSIX only: the in-notebook check imports this module on any system
        lock = open(self.path[:-5] + ".lock", "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return  # another helper serves this course
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            listener.bind(self.path)
        finally:
            os.umask(old)
        listener.listen(8)
        mine = os.stat(self.path).st_ino
        try:
            self._prepare()
            self._loop(listener, mine)
        finally:
            if self.spare is not None:
                self.spare.close()
            with contextlib.suppress(OSError):
                if os.stat(self.path).st_ino == mine:
                    os.unlink(self.path)
            listener.close()
            lock.close()

    def _prepare(self) -> None:
        """The next check's kernel: started now, the notebook's first imports done in it."""
        from course_lib.grading import selfcheck
        imports = selfcheck.warm_up_for(self.root, self.assignment)
        self.spare = selfcheck.EarlyKernel(self.sandbox, warm_up=imports)

    def _loop(self, listener, mine: int) -> None:
        last = time.monotonic()
        while True:
            listener.settimeout(max(0.1, min(5.0, last + self.idle - time.monotonic())))
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                if time.monotonic() >= last + self.idle or not self._still_mine(mine):
                    return
                continue
            with conn:
                conn.settimeout(30)  # a request that never comes does not hold the helper
                if peer_uid(conn) != os.getuid():
                    with contextlib.suppress(OSError):
                        send(conn, {"refused": "this check helper serves its own user only"})
                    continue
                try:
                    message = receive(conn)
                except OSError:
                    continue
                if message is None:
                    continue
                conn.settimeout(None)
                if message.get("op") == "stop":
                    with contextlib.suppress(OSError):
                        send(conn, {"stopped": True})
                    return
                if message.get("op") == "status":
                    with contextlib.suppress(OSError):
                        send(conn, {"ready": self.spare.ready.done(), "pid": os.getpid()})
                    continue
                if message.get("op") == "check":
                    self._check(conn, message)
                    last = time.monotonic()

    def _still_mine(self, mine: int) -> bool:
        try:
            return os.stat(self.path).st_ino == mine
        except OSError:
            return False

    def _check(self, conn, message: dict) -> None:
        """One check with the spare kernel, its output streamed; then a fresh spare."""
        from course_lib.grading import selfcheck
        spare, self.spare = self.spare, None
        out, err = Stream(conn, "out"), Stream(conn, "err")
        answer = {}
        try:
            os.chdir(str(message.get("cwd") or self.folder))
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                answer["exit"] = selfcheck.check(
                    str(message["path"]), root=self.root, sandbox=self.sandbox,
                    verbose=bool(message.get("verbose")), only=tuple(message.get("only") or ()),
                    timings=bool(message.get("timings")), spare=spare,
                    width=int(message.get("width") or 100), started=message.get("started"))
        except SystemExit as e:
            if isinstance(e.code, str):
                err.write(e.code + "\n")
            answer["exit"] = e.code if isinstance(e.code, int) else 1
        except Exception as e:  # noqa: BLE001 (the command checks cold; the helper goes on)
            answer = {"crashed": f"{type(e).__name__}: {e}"}
        finally:
            spare.close()
            os.chdir(self.folder)
        with contextlib.suppress(OSError):
            send(conn, answer)
        self.assignment = selfcheck.last_assignment or self.assignment
        self._prepare()


class Stream:
    """A text stream whose writes go to the command as frames (lost if it went away)."""

    def __init__(self, conn, kind: str):
        self.conn, self.kind, self.gone = conn, kind, False

    def write(self, data: str) -> int:
        if data and not self.gone:
            try:
                send(self.conn, {self.kind: data})
            except OSError:
                self.gone = True
        return len(data)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def main(argv=None) -> int:
    """`python -m course_lib.grading.warm ROOT SANDBOX ASSIGNMENT`: run a helper."""
    root, sandbox, assignment = (argv or sys.argv[1:])[:3]
    import signal
    from course_lib.cli import quiet_dependencies
    quiet_dependencies(sqlalchemy=False)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # its kernel and socket go too
    Helper(root, json.loads(sandbox), assignment).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
