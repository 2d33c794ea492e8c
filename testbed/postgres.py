"""A throwaway PostgreSQL cluster for tests and benchmarks: own directory, own port, unix socket only.

Never the machine's own server: ``initdb`` makes a fresh cluster in a temp
directory, listening on no TCP address at all (``listen_addresses=''``) and on
a unix socket inside that directory. Started as root, the server runs as the
``postgres`` user, which owns the directory.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path

from testbed.ports import free_port


def _pg_bin() -> Path:
    """The newest installed server's binaries (Debian keeps each major version in its own folder)."""
    if os.environ.get("RFR_PG_BIN"):
        return Path(os.environ["RFR_PG_BIN"])
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _pg_bin()
_names = count(1)


def _as_postgres() -> dict[str, object]:
    if os.getuid() != 0:
        return {}
    entry = pwd.getpwnam("postgres")

    def demote() -> None:
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)

    return {"preexec_fn": demote}


@dataclass
class PostgresServer:
    workdir: Path
    port: int
    user: str = "postgres"
    databases: list[str] = field(default_factory=list)

    @property
    def socket_dir(self) -> Path:
        return self.workdir / "sock"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}@/{dbname}?host={self.socket_dir}&port={self.port}"

    def initdb(self) -> None:
        data = self.workdir / "data"
        self.socket_dir.mkdir(parents=True)
        if os.getuid() == 0:
            entry = pwd.getpwnam("postgres")
            for p in (self.workdir, self.socket_dir):
                os.chown(p, entry.pw_uid, entry.pw_gid)
        subprocess.run([str(PG_BIN / "initdb"), "-D", str(data), "-U", self.user, "-A", "trust", "-E", "UTF8",
                        "--no-sync"], check=True, capture_output=True, **_as_postgres())  # type: ignore[call-overload]

    def start(self) -> None:
        data = self.workdir / "data"
        subprocess.run(
            [str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(self.workdir / "postgres.log"), "-w", "-t", "60",
             "-o", f"-p {self.port} -k {self.socket_dir} -c listen_addresses='' -c fsync=on", "start"],
            check=True, capture_output=True, **_as_postgres())  # type: ignore[call-overload]

    def create_database(self, prefix: str = "rfr") -> str:
        """A new empty database; returns its URL."""
        import psycopg

        name = f"{prefix}_{os.getpid()}_{next(_names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.databases.append(name)
        return self.url(name)

    def stop(self) -> None:
        data = self.workdir / "data"
        if data.exists():
            subprocess.run([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                           check=False, capture_output=True, **_as_postgres())  # type: ignore[call-overload]
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_postgres() -> PostgresServer:
    workdir = Path(tempfile.mkdtemp(prefix="rfr-pg-"))
    os.chmod(workdir, 0o755)
    server = PostgresServer(workdir=workdir, port=free_port())
    server.initdb()
    deadline = time.monotonic() + 10
    while True:
        try:
            server.start()
            return server
        except subprocess.CalledProcessError:  # the free port was taken meanwhile: try another
            if time.monotonic() > deadline:
                raise
            server.port = free_port()
