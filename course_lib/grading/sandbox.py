"""Run a student's kernel in a bubblewrap sandbox.

What the kernel sees: the system's /usr, a handful of /etc files, the Python installation and
virtual environment (read-only), `course_lib` (read-only: it is public), a fresh working folder
holding only the submission's files, and a per-kernel folder with its connection file and ZMQ
ipc sockets (a shared folder would expose other kernels' signing keys). No source/, no
gradebook, no other submission, no home folder, no network (ipc transport, so the client stays
outside). Inside it is uid 1000 with no capabilities; outside, as root, a pids cgroup caps the
processes (RLIMIT_NPROC does not bind root), prlimit caps address space and file size.

When its notebook is done, however it ended, `SandboxKernelManager.cleanup_all` kills what the
kernel left running and waits for the process it launched: an unwaited child stays a zombie
that holds a process slot (RLIMIT_NPROC counts it) until the grading worker exits.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass

from jupyter_client import AsyncKernelManager
from jupyter_client.kernelspec import KernelSpec

import course_lib

ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "fonts", "localtime", "nsswitch.conf",
             "ssl/certs", "mime.types", "matplotlibrc")
PIDS_CGROUP_ROOTS = ("/sys/fs/cgroup/pids", "/sys/fs/cgroup")


@dataclass(frozen=True)
class Limits:
    cell_timeout: int = 60                 # seconds of wall time per cell
    address_space: int = 4 << 30           # bytes (torch needs ~2 GB just to import)
    processes: int = 64
    output_bytes: int = 1 << 20            # per cell, capped while collected
    file_bytes: int = 512 << 20            # largest file the kernel may write
    tmp_bytes: int = 256 << 20             # its private /tmp (tmpfs, counts as memory)


def bwrap_available() -> bool:
    if sys.platform != "linux" or shutil.which("bwrap") is None:
        return False
    probe = subprocess.run(["bwrap", "--unshare-user", "--ro-bind", "/", "/", "true"],
                           capture_output=True)
    return probe.returncode == 0


def _system_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/lib", "/lib64", "/lib32", "/sbin"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    for name in ETC_FILES:
        path = os.path.join("/etc", name)
        if os.path.exists(path):
            args += ["--ro-bind", path, path]
    return args


def _python_binds() -> list[str]:
    """The interpreter, the environment, and course_lib (for an editable install)."""
    paths = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix), sys.prefix,
             os.path.dirname(os.path.realpath(course_lib.__file__))}
    args = []
    for path in sorted(paths):
        args += ["--ro-bind", path, path]
    return args


class PidsCgroup:
    """A pids cgroup for one kernel (root only); None where the controller is not writable."""

    def __init__(self, max_pids: int):
        self.path = None
        for root in PIDS_CGROUP_ROOTS:
            if os.path.exists(os.path.join(root, "cgroup.procs")) and os.access(root, os.W_OK):
                path = os.path.join(root, f"course-{uuid.uuid4().hex[:12]}")
                try:
                    os.mkdir(path)
                    with open(os.path.join(path, "pids.max"), "w") as f:
                        f.write(str(max_pids))
                except OSError:
                    with contextlib.suppress(OSError):
                        os.rmdir(path)
                    continue
                self.path = path
                return

    def wrap(self, cmd: list[str]) -> list[str]:
        if self.path is None:
            return cmd
        procs = os.path.join(self.path, "cgroup.procs")
        return ["/bin/sh", "-c", f'echo $$ > "{procs}" && exec "$@"', "course-sandbox"] + cmd

    def destroy(self):
        if self.path is None:
            return
        for _ in range(50):
            try:
                with open(os.path.join(self.path, "cgroup.procs")) as f:
                    pids = [int(p) for p in f.read().split()]
            except OSError:
                break
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)
        with contextlib.suppress(OSError):
            os.rmdir(self.path)


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid`, from /proc (host pids, whatever their namespace)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:  # the field after (comm) state
            found.append(int(entry))
    return found


def _kill_children(pid: int) -> bool:
    """SIGKILL the direct children of `pid`; whether there were any."""
    children = _children(pid)
    for child in children:
        with contextlib.suppress(OSError):
            os.kill(child, signal.SIGKILL)
    return bool(children)


def kill_and_reap(process: subprocess.Popen, grace: float = 1.0, timeout: float = 30.0) -> None:
    """Kill a launched kernel with everything below it, and wait for it.

    Children first: under bwrap the child is the sandbox's init, whose death takes its whole
    pid namespace down; bwrap then reaps it and exits by itself. Killing bwrap first would
    orphan that init to the host's init instead of letting bwrap reap it.
    """
    if process.poll() is None:
        if _kill_children(process.pid):
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(grace)
        if process.poll() is None:
            with contextlib.suppress(OSError):  # its own group: it was started in a new session
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                process.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout)  # past this it is stuck in the kernel; subprocess retries later


def sandbox_command(kernel_cmd: list[str], workdir: str, kdir: str, limits: Limits,
                    env: dict[str, str]) -> list[str]:
    cmd = ["bwrap", "--die-with-parent", "--new-session",
           "--unshare-user", "--uid", "1000", "--gid", "1000",
           "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
           "--unshare-cgroup-try", "--hostname", "sandbox", "--cap-drop", "ALL"]
    # /tmp first: the environment, course_lib or the work folders may live below it
    cmd += ["--proc", "/proc", "--dev", "/dev", "--size", str(limits.tmp_bytes), "--tmpfs", "/tmp"]
    cmd += _system_binds() + _python_binds()
    cmd += ["--bind", workdir, workdir, "--bind", kdir, kdir, "--chdir", workdir,
            "--clearenv", "--unsetenv", "JPY_PARENT_PID"]
    for key, value in env.items():
        cmd += ["--setenv", key, value]
    cmd += ["--", "/usr/bin/prlimit", f"--as={limits.address_space}",
            f"--fsize={limits.file_bytes}", "--core=0", f"--nproc={limits.processes}", "--"]
    return cmd + kernel_cmd


def kernel_env(home: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The kernel's whole environment: nothing of the grader's (its secret least of all)."""
    env = {
        "PATH": f"{os.path.dirname(sys.executable)}:/usr/bin:/bin",
        "HOME": home, "LANG": "C.UTF-8", "PYTHONHASHSEED": "0",
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "MPLCONFIGDIR": os.path.join(home, "mpl"), "IPYTHONDIR": os.path.join(home, "ipython"),
        "JUPYTER_RUNTIME_DIR": os.path.join(home, "runtime"),
        # one thread each: N workers use N cores
        "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        "TORCH_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1",
    }
    for key in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):  # old OpenBLAS needs these here
        if key in os.environ:
            env[key] = os.environ[key]
    env.update(extra or {})
    return env


def _seed_matplotlib_cache(mpl_dir: str) -> None:
    """Copy the grader's font cache so each kernel does not rebuild it (seconds each)."""
    os.makedirs(mpl_dir, exist_ok=True)
    try:
        import matplotlib
        cache = matplotlib.get_cachedir()
    except Exception:
        return
    for name in os.listdir(cache) if os.path.isdir(cache) else []:
        if name.startswith("fontlist") and name.endswith(".json"):
            shutil.copy(os.path.join(cache, name), mpl_dir)


class SandboxKernelManager(AsyncKernelManager):
    """A kernel manager whose kernel runs under bwrap, talking over ipc sockets."""

    def __init__(self, workdir: str, limits: Limits, extra_env=None, sandbox=True, **kwargs):
        self.kdir = tempfile.mkdtemp(prefix="course-kernel-")
        os.chmod(self.kdir, 0o700)
        home = os.path.join(self.kdir, "home")
        _seed_matplotlib_cache(os.path.join(home, "mpl"))
        super().__init__(transport="ipc", ip=os.path.join(self.kdir, "zmq"),
                         connection_file=os.path.join(self.kdir, "kernel.json"), **kwargs)
        self.workdir, self.limits, self.sandbox = workdir, limits, sandbox
        self.env = kernel_env(home, extra_env)
        self.cgroup = PidsCgroup(limits.processes) if sandbox else None
        self._kernel_spec = KernelSpec(
            argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            display_name="Python 3 (sandboxed)", language="python",
            interrupt_mode="message")  # a SIGINT to bwrap would kill the kernel
        self._clients = []

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        kw["stdout"] = kw["stderr"] = subprocess.DEVNULL  # the kernel's own logs are noise here
        kw.pop("env", None)
        return await super()._async_launch_kernel(kernel_cmd, **kw)

    def format_kernel_cmd(self, extra_arguments=None):
        cmd = super().format_kernel_cmd(extra_arguments)
        if not self.sandbox:
            return ["/usr/bin/env", "-i"] + [f"{k}={v}" for k, v in self.env.items()] + cmd \
                if os.path.exists("/usr/bin/env") else cmd
        return self.cgroup.wrap(sandbox_command(cmd, self.workdir, self.kdir, self.limits,
                                                self.env))

    def client(self, **kwargs):
        """A client for the kernel, closed by `cleanup_all` (nbclient closes only the clients
        of kernel managers it created itself)."""
        kc = super().client(**kwargs)
        self._clients.append(kc)
        return kc

    async def _async_kill_kernel(self, restart: bool = False) -> None:
        """jupyter_client's kill, after the sandbox's init: bwrap can then reap it."""
        if self.has_kernel and _kill_children(self.provisioner.process.pid):
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._async_wait(), timeout=1.0)
        await super()._async_kill_kernel(restart=restart)

    def cleanup_all(self):
        """Release all the kernel held, once its notebook is done however it ended (finished,
        died, timed out, killed); safe to call again.

        Kills and waits for the launched process, then kills whatever is left in the pids
        cgroup; closes the clients' channels (a thread and sockets each) and the manager's
        own sockets; removes the kernel's folder.
        """
        while self._clients:
            self._clients.pop().stop_channels()
        process = getattr(self.provisioner, "process", None)
        if process is not None:
            kill_and_reap(process)
            self.provisioner.process = None
        if self.cgroup is not None:
            self.cgroup.destroy()
        self._close_control_socket()
        if self._created_context and not self.context.closed:
            self.context.destroy(linger=0)
        shutil.rmtree(self.kdir, ignore_errors=True)
