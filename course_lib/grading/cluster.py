"""Grading on a Dask cluster that only the instructor's machines can join: mutual TLS.

Dask moves tasks and results as pickled Python objects, so whoever can talk to the scheduler
can run code on every worker and forge results. `course grade` therefore connects only to a
`tls://` scheduler, presenting a client certificate signed by a private CA (the scheduler and
workers present theirs, signed by the same CA, and require the peer's); a plain `tcp://`
scheduler is refused unless the instructor says `--insecure-scheduler`.

`make_certs` writes that CA and the scheduler, worker and client certificates with the
`openssl` command line tool (in every Linux distribution and macOS; Python's own `ssl`
cannot issue certificates).
"""
from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import subprocess
import tempfile
from dataclasses import dataclass

ROLES = ("scheduler", "worker", "client")
INSECURE = ("refusing the plain-TCP scheduler {address}: anyone who can reach its port can run "
            "code on the graders, read submissions and forge results; use a tls:// scheduler "
            "(see `course cluster-certs`) or pass --insecure-scheduler")

# Every certificate may serve and connect: workers do both, and so does the scheduler.
EXTENSIONS = """\
[ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = {names}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


class ClusterError(ValueError):
    """A scheduler address or TLS setup that `course grade` will not use."""


@dataclass(frozen=True)
class Scheduler:
    """Where to grade and how to prove who we are; TLS files left None come from Dask's config."""
    address: str
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    insecure: bool = False

    @property
    def scheme(self) -> str:
        from distributed.comm.addressing import parse_address
        return parse_address(self.address)[0]


def as_scheduler(scheduler) -> Scheduler:
    return scheduler if isinstance(scheduler, Scheduler) else Scheduler(scheduler)


def check(scheduler: Scheduler) -> None:
    """Refuse an unencrypted scheduler (unless told) and TLS options it would ignore."""
    given = [s for s in (scheduler.ca, scheduler.cert, scheduler.key) if s]
    if scheduler.scheme == "tls":
        return
    if given:
        raise ClusterError(f"--tls-ca/--tls-cert/--tls-key need a tls:// scheduler address, "
                           f"not {scheduler.address}")
    if not scheduler.insecure:
        raise ClusterError(INSECURE.format(address=scheduler.address))


def security(scheduler: Scheduler):
    """Dask `Security` for the client role: our options first, then Dask's configuration."""
    from distributed.security import Security
    given = {"tls_ca_file": scheduler.ca, "tls_client_cert": scheduler.cert,
             "tls_client_key": scheduler.key}
    sec = Security(require_encryption=True, **{k: v for k, v in given.items() if v})
    if not (sec.tls_ca_file and sec.tls_client_cert):
        raise ClusterError(f"{scheduler.address} needs a CA and a client certificate: give "
                           "--tls-ca, --tls-cert and --tls-key, or set distributed.comm.tls."
                           "ca-file and distributed.comm.tls.client.cert/key in Dask's config")
    for path in (sec.tls_ca_file, sec.tls_client_cert, sec.tls_client_key):
        if path and "\n" not in path and not os.path.isfile(path):  # "\n": PEM given inline
            raise ClusterError(f"TLS file not found: {path}")
    return sec


def connect(scheduler):
    """A Dask client on a checked scheduler: mutual TLS, or plain TCP when explicitly allowed."""
    from dask.distributed import Client
    scheduler = as_scheduler(scheduler)
    check(scheduler)
    sec = security(scheduler) if scheduler.scheme == "tls" else None
    try:
        return Client(scheduler.address, security=sec)
    except OSError as e:  # refused, timed out, or a TLS handshake that failed
        raise ClusterError(f"cannot reach the scheduler {scheduler.address}: {e}") from e


# ---- certificates -------------------------------------------------------------------------------

def files(folder: str) -> dict:
    """{name: path} of everything `make_certs` writes into `folder`."""
    names = {"ca": "ca.pem", "ca_key": "ca-key.pem"}
    for role in ROLES:
        names[role] = f"{role}.pem"
        names[f"{role}_key"] = f"{role}-key.pem"
    return {k: os.path.join(folder, v) for k, v in names.items()}


def _openssl(*args: str) -> None:
    try:
        result = subprocess.run(["openssl", *args], capture_output=True, text=True)
    except FileNotFoundError:
        raise ClusterError("the openssl command is needed (apt-get install openssl)") from None
    if result.returncode != 0:
        raise ClusterError(f"openssl {args[0]} failed: {result.stderr.strip()[-500:]}")


def _new_key(path: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never readable by others
    os.close(fd)
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", path)
    os.chmod(path, 0o600)


def _subject_alt_names(hosts) -> str:
    names = []
    for host in ["localhost", "127.0.0.1", *hosts]:
        try:
            ipaddress.ip_address(host)
            names.append(f"IP:{host}")
        except ValueError:
            names.append(f"DNS:{host}")
    return ", ".join(dict.fromkeys(names))


def _sign(csr, out, ext, section, days, ca=None, ca_key=None, self_key=None):
    serial = "0x" + secrets.token_hex(16)
    issuer = ["-CA", ca, "-CAkey", ca_key] if ca else ["-signkey", self_key]
    _openssl("x509", "-req", "-in", csr, *issuer, "-set_serial", serial, "-days", str(days),
             "-sha256", "-extfile", ext, "-extensions", section, "-out", out)


def make_certs(folder: str, hosts=(), days: int = 365) -> dict:
    """A private CA and certificates for the scheduler, workers and client; {name: path}.

    `hosts` are extra names or addresses of the scheduler and workers for the certificates
    (Dask itself checks the CA, not host names). Keys are mode 0600; existing files are kept
    and make this fail, so a working cluster's CA is never replaced by accident.
    """
    paths = files(folder)
    existing = [p for p in paths.values() if os.path.exists(p)]
    if existing:
        raise ClusterError(f"{existing[0]} exists: choose an empty folder")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    try:
        _write_certs(paths, hosts, days)
    except BaseException:
        for path in paths.values():  # half a CA is no use, and would block the next attempt
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
        raise
    return paths


def _write_certs(paths: dict, hosts, days: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ext = os.path.join(tmp, "ext.cnf")
        with open(ext, "w") as f:
            f.write(EXTENSIONS.format(names=_subject_alt_names(hosts)))
        for name in ("ca", *ROLES):
            key, csr = paths[f"{name}_key"], os.path.join(tmp, f"{name}.csr")
            _new_key(key)
            subject = "/CN=course grading CA" if name == "ca" else f"/CN=course {name}"
            _openssl("req", "-new", "-key", key, "-subj", subject, "-out", csr)
            if name == "ca":
                _sign(csr, paths["ca"], ext, "ca", days, self_key=key)
            else:
                _sign(csr, paths[name], ext, "leaf", days, paths["ca"], paths["ca_key"])
