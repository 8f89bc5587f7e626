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

import zmq

import course_lib

ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "fonts", "localtime", "nsswitch.conf",
             "ssl/certs", "mime.types", "matplotlibrc")
CGROUP_ROOT = "/sys/fs/cgroup"
MAX_KERNEL_MESSAGE = 16 << 20  # bytes of one message from a kernel (a larger one is dropped)


@dataclass(frozen=True)
class Limits:
    cell_timeout: int = 60                 # seconds of wall time per cell
    notebook_timeout: int = 300            # seconds of wall time for a whole notebook
    memory_bytes: int = 4 << 30            # memory of the whole sandbox (a cgroup), all processes
    output_total_bytes: int = 10 << 20     # output kept per notebook (then truncated, with a note)
    scratch_bytes: int = 512 << 20         # all the kernel writes outside /tmp (a tmpfs, as root)
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


class Cgroups:
    """This kernel's own cgroups (root only): a process cap and a memory limit for the whole
    sandbox, all its processes together (RLIMIT_AS is per process, RLIMIT_NPROC does not bind
    root). cgroup v1 (a folder per controller) or v2; a controller we cannot write is skipped.
    """

    def __init__(self, limits: Limits):
        self.paths: list[str] = []
        self.memory: str | None = None
        name = f"course-{uuid.uuid4().hex[:12]}"
        for controller, parent in _own_cgroups():
            settings = {"pids": {"pids.max": limits.processes},
                        "memory": {"memory.limit_in_bytes": limits.memory_bytes,
                                   "memory.memsw.limit_in_bytes": limits.memory_bytes},
                        "unified": {"pids.max": limits.processes,
                                    "memory.max": limits.memory_bytes, "memory.swap.max": 0},
                        }[controller]
            path = os.path.join(parent, name)
            try:
                os.mkdir(path)
                for key, value in settings.items():
                    if os.path.exists(os.path.join(path, key)):
                        with open(os.path.join(path, key), "w") as f:
                            f.write(str(value))
            except OSError:
                self._remove(path)
                continue
            self.paths.append(path)
            if controller in ("memory", "unified") and os.path.exists(
                    os.path.join(path, "memory.limit_in_bytes" if controller == "memory"
                                 else "memory.max")):
                self.memory = path

    def wrap(self, cmd: list[str]) -> list[str]:
        if not self.paths:
            return cmd
        join = " && ".join(f'echo $$ > "{os.path.join(p, "cgroup.procs")}"' for p in self.paths)
        return ["/bin/sh", "-c", f'{join} && exec "$@"', "course-sandbox"] + cmd

    def out_of_memory(self) -> bool:
        """Whether the sandbox hit its memory limit (an OOM kill or a refused allocation)."""
        if self.memory is None:
            return False
        for name, key in (("memory.events", "oom_kill"), ("memory.oom_control", "oom_kill")):
            with contextlib.suppress(OSError, ValueError):
                with open(os.path.join(self.memory, name)) as f:
                    fields = dict(line.split() for line in f if len(line.split()) == 2)
                if int(fields.get(key, 0)) > 0:
                    return True
        with contextlib.suppress(OSError, ValueError):
            with open(os.path.join(self.memory, "memory.failcnt")) as f:
                return int(f.read()) > 0
        return False

    def destroy(self):
        for path in self.paths:
            self._remove(path)
        self.paths = []

    @staticmethod
    def _remove(path):
        for _ in range(50):
            try:
                with open(os.path.join(path, "cgroup.procs")) as f:
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
            os.rmdir(path)


def _own_cgroups():
    """(controller, folder) of the cgroups this process is in, where we may make children."""
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for controller in ("pids", "memory"):
            if controller in controllers.split(","):
                folder = os.path.join(CGROUP_ROOT, controller) + path
                if os.access(folder, os.W_OK):
                    found.append((controller, folder))
        if controllers == "" and os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers")):
            folder = CGROUP_ROOT + path
            if os.access(folder, os.W_OK):
                found.append(("unified", folder))
    return found


class Scratch:
    """One kernel's writable files (its working folder and its own folder) on a size-limited
    tmpfs (root only): nothing it writes lands on a shared disk. Elsewhere a plain folder."""

    def __init__(self, size: int):
        self.path = tempfile.mkdtemp(prefix="course-scratch-")
        os.chmod(self.path, 0o700)
        self.mounted = (sys.platform == "linux" and os.geteuid() == 0 and shutil.which("mount")
                        and subprocess.run(["mount", "-t", "tmpfs", "-o",
                                            f"size={size},mode=0700", "tmpfs", self.path],
                                           capture_output=True).returncode == 0)

    def folder(self, name: str) -> str:
        path = os.path.join(self.path, name)
        os.makedirs(path, mode=0o700, exist_ok=True)
        return path

    def remove(self):
        if self.mounted:
            subprocess.run(["umount", "-l", self.path], capture_output=True)
        shutil.rmtree(self.path, ignore_errors=True)


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
    requests = os.path.join(kdir, "channel", "in")  # the grader writes, the kernel only reads
    cmd += ["--bind", workdir, workdir, "--bind", kdir, kdir, "--ro-bind", requests, requests,
            "--chdir", workdir,
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

    def __init__(self, workdir: str, limits: Limits, extra_env=None, sandbox=True, kdir=None,
                 **kwargs):
        self.kdir = kdir or tempfile.mkdtemp(prefix="course-kernel-")
        os.chmod(self.kdir, 0o700)
        self.channel_dir = os.path.join(self.kdir, "channel")
        for sub in ("in", "out"):
            os.makedirs(os.path.join(self.channel_dir, sub), mode=0o700)
        home = os.path.join(self.kdir, "home")
        _seed_matplotlib_cache(os.path.join(home, "mpl"))
        super().__init__(transport="ipc", ip=os.path.join(self.kdir, "zmq"),
                         connection_file=os.path.join(self.kdir, "kernel.json"), **kwargs)
        self.workdir, self.limits, self.sandbox = workdir, limits, sandbox
        self.env = kernel_env(home, extra_env)
        self.cgroup = Cgroups(limits) if sandbox else None
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
        """A client that drops oversized messages before decoding them (ZMQ's MAXMSGSIZE),
        closed by `cleanup_all` (nbclient closes only the clients of managers it created)."""
        kc = super().client(**kwargs)
        kc.context.setsockopt(zmq.MAXMSGSIZE, MAX_KERNEL_MESSAGE)
        self._clients.append(kc)
        return kc

    def death_reason(self) -> str | None:
        if self.cgroup is not None and self.cgroup.out_of_memory():
            return (f"the kernel hit the memory limit of {self.limits.memory_bytes >> 20} MB "
                    "for the whole sandbox and was stopped")
        return None

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
