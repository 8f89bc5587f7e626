"""Cluster grading's front door: certificates, the refusal of plain TCP, TLS from options or config.

The cluster itself (a TLS scheduler and workers grading a class, intruders refused) runs in
tests/test_scale.py, beside the serial gradebook it is compared with.
"""
import os
import stat
import subprocess
import sys

import dask
import pytest

from course_lib.grading import cluster, pipeline
from course_lib.grading.verdicts import Verdict
from course_lib.grading.runner import Result, Task
from harness import REPO

COURSE = os.path.join(os.path.dirname(sys.executable), "course")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return cluster.make_certs(str(tmp_path_factory.mktemp("certs") / "cluster"),
                              hosts=["grader.example.edu", "10.1.2.3"])


def _openssl(*args):
    return subprocess.run(["openssl", *args], capture_output=True, text=True, check=True).stdout


def test_certificates_are_signed_by_the_private_ca_for_both_ends(certs):
    for role in cluster.ROLES:
        assert _openssl("verify", "-CAfile", certs["ca"], certs[role]).strip().endswith("OK")
        text = _openssl("x509", "-in", certs[role], "-noout", "-text")
        assert "TLS Web Server Authentication, TLS Web Client Authentication" in text
        assert "CA:FALSE" in text
        for name in ("DNS:localhost", "IP Address:127.0.0.1", "DNS:grader.example.edu",
                     "IP Address:10.1.2.3"):
            assert name in text
    assert "CA:TRUE" in _openssl("x509", "-in", certs["ca"], "-noout", "-text")


def test_keys_are_private_and_an_existing_ca_is_never_replaced(certs):
    for name, path in certs.items():
        mode = stat.S_IMODE(os.stat(path).st_mode)
        assert mode == 0o600 if name.endswith("key") else not mode & 0o022, (name, oct(mode))
    assert stat.S_IMODE(os.stat(os.path.dirname(certs["ca"])).st_mode) == 0o700
    before = open(certs["ca_key"]).read()
    with pytest.raises(cluster.ClusterError, match="exists"):
        cluster.make_certs(os.path.dirname(certs["ca"]))
    assert open(certs["ca_key"]).read() == before


def test_a_failed_run_leaves_no_half_made_ca(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))  # no openssl
    with pytest.raises(cluster.ClusterError, match="openssl"):
        cluster.make_certs(str(tmp_path / "certs"))
    assert os.listdir(tmp_path / "certs") == []


def test_plain_tcp_is_refused_unless_explicitly_allowed():
    for address in ("tcp://grader:8786", "grader:8786"):  # no scheme: Dask's default, tcp
        with pytest.raises(cluster.ClusterError, match="--insecure-scheduler"):
            cluster.check(cluster.Scheduler(address))
        cluster.check(cluster.Scheduler(address, insecure=True))
    cluster.check(cluster.Scheduler("tls://grader:8786"))
    with pytest.raises(cluster.ClusterError, match="tls://"):
        cluster.check(cluster.Scheduler("tcp://grader:8786", ca="ca.pem", insecure=True))


def test_the_executor_refuses_plain_tcp_before_connecting():
    with pytest.raises(cluster.ClusterError, match="forge results"):
        pipeline.make_executor(2, "tcp://127.0.0.1:1")


def test_course_grade_refuses_a_tcp_scheduler_with_the_reason():
    result = subprocess.run([COURSE, "grade", "--scheduler", "tcp://127.0.0.1:1"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()
    assert len(message) == 1 and "run code on the graders" in message[0], result.stderr
    assert "--insecure-scheduler" in message[0]


def test_tls_files_come_from_options_first_then_from_dask_config(certs):
    sec = cluster.security(cluster.Scheduler("tls://h:1", certs["ca"], certs["client"],
                                             certs["client_key"]))
    assert (sec.tls_ca_file, sec.tls_client_cert, sec.tls_client_key) == \
        (certs["ca"], certs["client"], certs["client_key"])
    assert sec.require_encryption
    with dask.config.set({"distributed.comm.tls.ca-file": certs["ca"],
                          "distributed.comm.tls.client.cert": certs["client"],
                          "distributed.comm.tls.client.key": certs["client_key"]}):
        sec = cluster.security(cluster.Scheduler("tls://h:1"))
        assert (sec.tls_ca_file, sec.tls_client_cert) == (certs["ca"], certs["client"])
        assert sec.get_connection_args("client")["ssl_context"] is not None


def test_tls_without_certificates_is_a_clear_error(tmp_path):
    with pytest.raises(cluster.ClusterError, match="--tls-ca"):
        cluster.security(cluster.Scheduler("tls://h:1"))
    with pytest.raises(cluster.ClusterError, match="not found"):
        cluster.security(cluster.Scheduler("tls://h:1", str(tmp_path / "ca.pem"),
                                           str(tmp_path / "c.pem"), str(tmp_path / "k.pem")))


class _Done:
    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value


def test_a_worker_cannot_answer_for_another_student():
    task = Task("alice", "a1", "nb", "{}")
    honest = Result(task.key, "{}", {"test_x": Verdict(True)}, [], 1.0)
    assert pipeline._result_or_failure(task, _Done(honest)) is honest
    forged = [Result(("bob", "a1", "nb"), "{}", {}, [], 1.0),
              Result(task.key, "{}", {"test_x": {"passed": True}}, [], 1.0),
              Result(task.key, "{}", {"test_x": Verdict("yes")}, [], 1.0),
              {"key": task.key}, None]
    for value in forged:
        result = pipeline._result_or_failure(task, _Done(value))
        assert result.key == task.key and result.seconds < 0  # failed, and not cached
        assert "something other than this notebook's result" in result.reasons[0]


def test_an_unreachable_scheduler_is_a_clear_error(certs):
    scheduler = cluster.Scheduler("tls://127.0.0.1:1", certs["ca"], certs["client"],
                                  certs["client_key"])
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        with pytest.raises(cluster.ClusterError, match="cannot reach the scheduler"):
            cluster.connect(scheduler)
