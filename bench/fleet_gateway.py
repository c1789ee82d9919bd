"""The gateway side of ``bench fleet``: K ``agw serve`` replicas on one fresh PostgreSQL schema
(dropped after), on the local cluster that ``scripts/start-postgres.sh`` starts (as ``make test``
does), and the client call (Submit, then Get with ``wait_ms`` until the outcome)."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.bench_gateway import IFNAME

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgresql+psycopg://agw:agw@127.0.0.1:5432/agw_test"  # scripts/start-postgres.sh's
STANDBY = "second replica standby"


def reachable(url: str) -> bool:
    engine = sa.create_engine(url, connect_args={"connect_timeout": 3}, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("select 1")
        return True
    except Exception:  # noqa: BLE001 - any reason it is unreachable
        return False
    finally:
        engine.dispose()


def base_url(given: str = "") -> str:
    """The database the schemas are made in: ``given``, else $AGW_BENCH_POSTGRES_URL, else
    $AGW_TEST_POSTGRES_URL, else the local cluster's (started with scripts/start-postgres.sh when
    it does not answer)."""
    url = given or os.environ.get("AGW_BENCH_POSTGRES_URL") or os.environ.get("AGW_TEST_POSTGRES_URL") or ""
    if url:
        return url
    if not reachable(DEFAULT_URL):
        log.info("PostgreSQL does not answer: running scripts/start-postgres.sh")
        out = subprocess.run(["bash", str(REPO / "scripts" / "start-postgres.sh")], check=True,  # noqa: S603,S607
                             capture_output=True, text=True).stdout.strip().splitlines()
        return out[-1] if out else DEFAULT_URL
    return DEFAULT_URL


@contextmanager
def fresh_schema(url: str) -> Iterator[str]:
    """The URL of a new, empty schema of ``url``'s database (``search_path``), dropped after."""
    schema = f"agw_bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'create schema "{schema}"')
        try:
            yield sa.engine.make_url(url).update_query_dict(
                {"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
        finally:
            with admin.begin() as conn:
                conn.exec_driver_sql(f'drop schema "{schema}" cascade')
    finally:
        admin.dispose()


# --- replicas ----------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def proc_status_mb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Replicas:
    """K ``agw serve`` processes on one journal, each listening on its own loopback port."""

    def __init__(self, k: int, *, journal_url: str, inventory: Path, root: Path, max_per_caller: int,
                 lease_s: float | None, profiles: Path | None = None) -> None:
        self.k, self.journal_url, self.inventory, self.root = k, journal_url, inventory, root
        self.profiles = profiles
        self.max_per_caller, self.lease_s = max_per_caller, lease_s
        self.ports = [free_port() for _ in range(k)]
        self.procs: list[subprocess.Popen[bytes]] = []
        self.channels: list[Any] = []
        self.stubs: list[Any] = []

    def start(self) -> None:
        agw = shutil.which("agw", path=str(Path(sys.executable).parent)) or "agw"
        for i, port in enumerate(self.ports):
            data = self.root / f"replica{i}"
            data.mkdir(mode=0o700, parents=True, exist_ok=True)
            argv = [agw, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", str(data),
                    "--inventory", str(self.inventory), "--journal", self.journal_url,
                    "--self-healing-interval-s", "0", "--max-activations-per-caller", str(self.max_per_caller)]
            if self.lease_s is not None:
                argv += ["--journal-lease-s", str(self.lease_s)]
            if self.profiles is not None:
                argv += ["--profiles", str(self.profiles)]
            with open(data / "serve.log", "ab") as out:
                self.procs.append(subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT))  # noqa: S603

    def wait_listening(self, *, first_s: float, others_s: float) -> str:
        """"" when every replica listens; else why not (a replica exited, or stayed a standby)."""
        deadline = time.monotonic() + first_s
        while not any(listening(p) for p in self.ports):
            if dead := [i for i, p in enumerate(self.procs) if p.poll() is not None]:
                return f"replica {dead[0]} exited: see {self.root / f'replica{dead[0]}' / 'serve.log'}"
            if time.monotonic() > deadline:
                return f"no replica listened within {first_s:g} s"
            time.sleep(0.1)
        deadline = time.monotonic() + others_s
        while not all(listening(p) for p in self.ports):
            if time.monotonic() > deadline:
                return STANDBY
            time.sleep(0.2)
        return ""

    def open_clients(self) -> None:
        import grpc

        from gateway.api.generated.activation.v1 import activation_pb2_grpc as pb_grpc

        self.channels = [grpc.aio.insecure_channel(f"127.0.0.1:{p}") for p in self.ports]
        self.stubs = [pb_grpc.ActivationServiceStub(c) for c in self.channels]

    async def close_clients(self) -> None:
        for c in self.channels:
            await c.close()
        self.channels, self.stubs = [], []

    def cpu_s(self) -> float:
        return sum(proc_cpu_s(p.pid) for p in self.procs if p.poll() is None)

    def memory(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        live = [p.pid for p in self.procs if p.poll() is None]
        return tuple(proc_status_mb(p, "VmRSS") for p in live), tuple(proc_status_mb(p, "VmHWM") for p in live)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


# --- the client ---------------------------------------------------------------------------
def submit_request(device: str, desc: str) -> Any:
    from gateway.api.generated.activation.v1 import activation_pb2 as pb

    msg = pb.SubmitRequest(request_id=f"benchfleet-{uuid.uuid4()}", atomic=True)
    task = msg.tasks.add(id="t", device=device, service="interface", action=pb.ACTION_MODIFY)
    task.parameters.update({"name": IFNAME, "description": desc, "type": "ethernetCsmacd", "enabled": True})
    return msg


async def activate(stub: Any, device: str, desc: str, *, timeout_s: float = 600.0) -> str:
    """Submit, then Get with wait_ms until the activation ended; "" when completed, else why not."""
    from gateway.api.generated.activation.v1 import activation_pb2 as pb

    ended = {pb.ACTIVATION_STATE_COMPLETED, pb.ACTIVATION_STATE_PARTIAL, pb.ACTIVATION_STATE_FAILED,
             pb.ACTIVATION_STATE_CANCELLED, pb.ACTIVATION_STATE_ROLLED_BACK, pb.ACTIVATION_STATE_FALLOUT}
    reply = await stub.Submit(submit_request(device, desc))
    deadline = time.monotonic() + timeout_s
    while True:
        left_ms = int((deadline - time.monotonic()) * 1000)
        act = await stub.Get(pb.GetRequest(activation_id=reply.activation_id, wait_ms=max(1, min(left_ms, 300_000))))
        if act.state in ended or left_ms <= 0:
            break
    if act.state == pb.ACTIVATION_STATE_COMPLETED:
        return ""
    errs = [f"{t.error.kind}: {t.error.message}" for t in act.tasks if t.HasField("error")]
    return f"{device}: {pb.ActivationState.Name(act.state)} {'; '.join(errs)}"[:300]


__all__ = ["DEFAULT_URL", "STANDBY", "Replicas", "activate", "base_url", "fresh_schema", "reachable"]
