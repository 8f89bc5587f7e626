"""The README's two commands on a fresh clone, as far as this machine allows: `make demo` and
`make test` first install the system packages (one script, quick when they are there; without
root one line saying what to run and what is skipped), then .venv, whose install is silent."""
import glob
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from harness import REPO

pytestmark = pytest.mark.slow
PYTHON = shutil.which("python3.11") or sys.executable


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    dest = str(tmp_path_factory.mktemp("fresh") / "backprop-from-scratch")
    subprocess.run(["git", "clone", "-q", REPO, dest], check=True)
    return dest


def sh(cwd, *cmd, **kwargs):
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, **kwargs)


@pytest.mark.parametrize("target", ["demo", "test"])
def test_both_commands_install_the_system_packages_first(clone, target):
    plan = sh(clone, "make", "--no-print-directory", "-n", target).stdout.splitlines()
    steps = [i for i, line in enumerate(plan) if ".ci/system-packages" in line]
    venv = [i for i, line in enumerate(plan) if "-m venv" in line]
    assert steps and venv and steps[0] < venv[0], plan
    last = "course demo" if target == "demo" else "pytest"
    assert last in plan[-1], plan


def test_ci_runs_the_suite_strictly(clone):
    with open(os.path.join(clone, ".ci", "run")) as f:
        assert "CI=true make test" in f.read()


def test_the_system_step_is_quick_and_quiet_when_all_is_installed(clone):
    result = sh(clone, "make", "-s", "system")
    assert result.returncode == 0, result.stderr
    if result.stdout + result.stderr:  # something was missing here: it was installed or named
        assert "system packages" in result.stdout + result.stderr


def test_without_root_one_line_says_what_to_run_and_what_is_skipped(clone):
    if os.geteuid() == 0 and not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) is needed to run the script as another user")
    fake = tempfile.mkdtemp()  # readable by the other user, unlike pytest's tmp_path
    try:
        os.chmod(fake, 0o755)
        with open(os.path.join(fake, "dpkg-query"), "w") as f:
            f.write("#!/bin/sh\nexit 1\n")                # nothing is installed
        os.chmod(os.path.join(fake, "dpkg-query"), 0o755)
        env = dict(os.environ, PATH=f"{fake}{os.pathsep}{os.environ['PATH']}")
        as_user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] \
            if os.geteuid() == 0 else []
        with open(os.path.join(clone, ".ci", "system-packages")) as f:
            script = f.read()
        result = subprocess.run([*as_user, "bash", "-s"], input=script, cwd="/", env=env,
                                capture_output=True, text=True)
    finally:
        shutil.rmtree(fake)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "`sudo apt-get install --no-install-recommends bubblewrap chromium" in lines[0]
    assert "`make test` skips the sandbox and adversarial suites" in lines[0]
    assert "the browser tests are skipped" in lines[0]


def test_the_package_installs_without_a_word(clone, tmp_path):
    """The Makefile's install, as it runs it (its pip upgraded first: a current pip shows the
    build backend's warnings), prints nothing: no license deprecation, no editable notice."""
    venv = str(tmp_path / "venv")
    subprocess.run([PYTHON, "-m", "venv", venv], check=True)
    pip = os.path.join(venv, "bin", "pip")
    plan = sh(clone, "make", "-n", ".venv/.installed").stdout.splitlines()
    installs = [line.split() for line in plan if "pip install" in line]
    assert len(installs) == 2 and "-e" in installs[1], plan
    for words in installs:
        args = [w.strip('"') for w in words[1:]]
        if "-e" in args:  # the package itself; its pinned dependencies are .venv's already
            args = [a.replace(".[dev]", ".") for a in args] + ["--no-deps"]
        result = sh(clone, pip, *args)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout + result.stderr == "", (args, result.stdout + result.stderr)
    (metadata,) = glob.glob(os.path.join(venv, "lib", "python*", "site-packages",
                                         "backprop_from_scratch-*.dist-info", "METADATA"))
    with open(metadata) as f:
        assert "License-Expression: MIT" in f.read().splitlines()
