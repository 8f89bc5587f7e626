"""Start, wait for and stop the hub (JupyterHub and its configurable-http-proxy)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

from course_lib.hub import classroom

CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "jupyterhub_config.py")


def describe(room: classroom.Classroom, env_bin: str, port: int, hub_port: int,
             proxy_api_port: int) -> str:
    """Write the class description that jupyterhub_config.py reads; returns its path."""
    klass = {"port": port, "hub_port": hub_port, "proxy_api_port": proxy_api_port,
             "proxy": classroom.PROXY, "env_bin": env_bin, "state_dir": room.path("state"),
             "config_dir": room.path("config"), "course_dir": room.course_dir,
             "instructor": room.instructor, "students": list(room.students)}
    path = room.path("state", "class.json")
    with open(path, "w") as f:
        json.dump(klass, f, indent=1)
    return path


def start(room: classroom.Classroom, class_file: str, log=None) -> subprocess.Popen:
    """JupyterHub as root (it switches to each user), in its own process group."""
    jupyterhub = os.path.join(os.path.dirname(sys.executable), "jupyterhub")
    env = dict(os.environ, COURSE_HUB_CLASS=class_file,
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    return subprocess.Popen([jupyterhub, "-f", CONFIG], cwd=room.path("state"), env=env,
                            stdout=log, stderr=subprocess.STDOUT if log else None,
                            start_new_session=True)


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    wait_http(f"http://127.0.0.1:{port}/hub/api/", proc, "jupyterhub", timeout)


def wait_http(url: str, proc: subprocess.Popen, what: str, timeout: float = 120) -> None:
    """Until `url` answers 200; an error if `proc` (the server) exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited early with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{what} did not answer {url} in time")


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the hub's process group (hub and proxy; the hub stops users' servers)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
