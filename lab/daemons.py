"""The device daemons of a node: their configuration files (pure) and how they are started.

A node's daemons run inside its network namespace (and its UTS namespace, so the hostname and
FRR's prompt are the node name), entered with ``nsenter``, which execs the daemon: the PID we
record is the daemon's own PID. Every daemon runs in the foreground, in its own session, so a
crash of the lab runner leaves them running and ``down`` can still find and stop them.

Recipes and their reasons: ``shared/lab-notes.md`` §1.1 (netconfd), §2a (FRR), §3.1 (snmpd).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

NETCONF_MODULES = ("ietf-interfaces", "iana-if-type", "ietf-ip", "ietf-system")
EMPTY_NETCONF_STARTUP = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"/>\n'
)
EMPTY_FRR_CONF = "frr defaults traditional\nservice integrated-vtysh-config\n!\n"
PATH_ENV = "/usr/sbin:/usr/bin:/sbin:/bin"
_children: dict[int, subprocess.Popen[bytes]] = {}  # reaped on kill so a killed daemon is not a zombie


@dataclass(frozen=True, kw_only=True)
class DaemonSpec:
    """How to (re)start one daemon; stored in the lab state so any process can restart it."""

    name: str  # netconfd, sshd, zebra, staticd, snmpd
    argv: tuple[str, ...]
    cwd: str
    log: str  # the daemon's own log file
    out: str  # its stdout/stderr
    env: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["argv"] = list(self.argv)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DaemonSpec:
        return cls(**{**d, "argv": tuple(d["argv"])})


def sshd_config(
    *,
    address: str,
    host_key: str,
    netconf: tuple[str, str] | None,  # (user, socket path)
    cli: tuple[str, str, str] | None,  # (user, vty socket dir, config dir)
) -> str:
    users = sorted({u for u in (netconf and netconf[0], cli and cli[0]) if u})
    lines = []
    if netconf:
        lines.append(f"ListenAddress {address}:830")
    if cli:
        lines.append(f"ListenAddress {address}:22")
    lines += [
        f"HostKey {host_key}",
        "PidFile none",
        # VERBOSE: "Connection from ADDR port P" for every connection, so a test can show that a
        # refused host key ended a connection before authentication (no Accepted/Failed password)
        "LogLevel VERBOSE",
        "UsePAM no",
        "PasswordAuthentication yes",
        "KbdInteractiveAuthentication no",
        "PubkeyAuthentication no",
        "PermitRootLogin no",
        "StrictModes no",
        "UseDNS no",
        "PrintMotd no",
        "PrintLastLog no",
        "X11Forwarding no",
        "AllowTcpForwarding no",
        "AllowAgentForwarding no",
        "MaxStartups 200",
        "MaxSessions 200",
        "LoginGraceTime 30",
        f"AllowUsers {' '.join(users)}",
    ]
    if netconf:
        lines.append(f"Subsystem netconf /usr/sbin/netconf-subsystem --ncxserver-sockname=830@{netconf[1]}")
        if cli:
            lines += ["Match LocalPort 830", f"    AllowUsers {netconf[0]}"]
    if cli:
        lines += [
            "Match LocalPort 22",
            f"    AllowUsers {cli[0]}",
            f"    ForceCommand /usr/bin/vtysh --vty_socket {cli[1]} --config_dir {cli[2]}",
        ]
    return "\n".join(lines) + "\n"


def snmpd_conf(*, node: str, address: str, creds: dict[str, str], extra: str = "") -> str:
    # No sysContact/sysName/sysLocation lines: pinned values make them notWritable (notes §3.1).
    return (
        f"agentAddress udp:{address}:161\n"
        f"sysDescr Lab device {node} (net-snmp)\n"
        "sysObjectID .1.3.6.1.4.1.8072.3.2.10\n"
        f"rocommunity {creds['community_ro']} default\n"
        f"rwcommunity {creds['community_rw']} default\n"
        f'createUser {creds["v3_user"]} SHA "{creds["v3_auth_key"]}" AES "{creds["v3_priv_key"]}"\n'
        f"rwuser {creds['v3_user']} priv\n"
        f"engineID agw-lab-{node}-{address}\n"
        + (extra if extra.endswith("\n") or not extra else extra + "\n")
    )


NETCONFD_SIL_ENV = "AGW_LAB_NETCONFD_SIL"
NETCONFD_SIL_DIR = "/usr/local/lib/agw-lab/netconfd-ietf-interfaces"
"""Where ``make setup`` unpacks Debian's ``netconfd-module-ietf-interfaces`` (``lib/`` the SIL,
``modules/`` the YANG module it loads). It is deliberately *not* installed as a package: installed,
every netconfd on the machine loads it (notes §1.6); here only nodes with ``oper-state: true`` do,
through ``--runpath``."""
SIL_INTERFACE_PREFIX = "eth"
"""The SIL reads every kernel interface each second (a popen per interface): only ``eth*``."""
GET_INTERFACE_IPV4 = """#!/bin/sh
# The helper the ietf-interfaces SIL runs for each interface (Debian does not ship it; notes §1.6).
ip=$(ip -4 -o addr show dev "$1" 2>/dev/null | awk '{split($4,a,"/"); print a[1]; exit}')
[ -z "$ip" ] && exit 0
printf '<ipv4 xmlns="urn:ietf:params:xml:ns:yang:ietf-ip"><address><ip>%s</ip></address></ipv4>\n' "$ip"
"""


def netconfd_sil_dir() -> Path:
    return Path(os.environ.get(NETCONFD_SIL_ENV) or NETCONFD_SIL_DIR)


def netconfd_spec(*, nsenter: tuple[str, ...], user: str, d: Path, logdir: Path,
                  oper_state: bool = False) -> DaemonSpec:
    """netconfd, YANG-only; with ``oper_state`` it also loads the ietf-interfaces SIL from
    :func:`netconfd_sil_dir` and serves ``interfaces-state`` of the node's namespace (it runs
    unprivileged, so the SIL's ``ifconfig`` side effects are refused by the kernel)."""
    sock = d / "ncxserver.sock"
    env = {"PATH": PATH_ENV, "HOME": str(d), "USER": user, "LOGNAME": user}
    extra: tuple[str, ...] = ()
    mount: tuple[str, ...] = ()
    if oper_state:
        sil = netconfd_sil_dir()
        extra = (f"--runpath={sil / 'lib'}",)
        # The SIL reads /sys/class/net/NAME/operstate: /sys must be the node's namespace's, as
        # `ip netns exec` gives it (nsenter only enters the network namespace: /sys stays the
        # host's, and the SIL aborts on an interface the host does not have). unshare and sh
        # exec, so the recorded PID is still netconfd's.
        mount = ("unshare", "--mount", "--propagation", "private", "/bin/sh", "-c",
                 'mount -t sysfs -o ro sysfs /sys && exec "$@"', "netconfd-sysfs")
        env.update(PATH=f"{d / 'bin'}:{PATH_ENV}", YUMA_MODPATH=str(sil / "modules"),
                   INTERFACE_NAME_PREFIX=SIL_INTERFACE_PREFIX)
    argv = (
        *nsenter,
        *mount,
        "setpriv",
        f"--reuid={user}",
        f"--regid={user}",
        "--init-groups",
        "/usr/sbin/netconfd",
        f"--ncxserver-sockname={sock}",
        f"--startup={d / 'startup-cfg.xml'}",
        f"--home={d}",
        f"--superuser={user}",
        *(f"--module={m}" for m in NETCONF_MODULES),
        "--port=830",
        f"--log={logdir / 'netconfd.log'}",
        "--log-level=info",
        *extra,
    )
    return DaemonSpec(
        name="netconfd",
        argv=argv,
        cwd=str(d),  # the txid file is searched in cwd first (notes §1.4)
        log=str(logdir / "netconfd.log"),
        out=str(logdir / "netconfd.out"),
        env=env,
    )


def sshd_spec(*, nsenter: tuple[str, ...], conf: Path, logdir: Path) -> DaemonSpec:
    return DaemonSpec(
        name="sshd",
        argv=(*nsenter, "/usr/sbin/sshd", "-D", "-f", str(conf), "-E", str(logdir / "sshd.log")),
        cwd="/",
        log=str(logdir / "sshd.log"),
        out=str(logdir / "sshd.out"),
        env={"PATH": PATH_ENV},
    )


def frr_specs(*, nsenter: tuple[str, ...], run: Path, logdir: Path) -> list[DaemonSpec]:
    out = []
    for name in ("zebra", "staticd"):
        out.append(
            DaemonSpec(
                name=name,
                argv=(
                    *nsenter,
                    f"/usr/lib/frr/{name}",
                    "-u", "frr", "-g", "frr",
                    "--vty_socket", str(run),
                    "-z", str(run / "zserv.api"),
                    "-i", str(run / f"{name}.pid"),
                    "-f", "/dev/null",
                    "-P", "0",
                    "--log", f"file:{logdir / (name + '.log')}",
                ),
                cwd=str(run),
                log=str(logdir / f"{name}.log"),
                out=str(logdir / f"{name}.out"),
                env={"PATH": PATH_ENV},
            )
        )
    return out


def snmpd_spec(*, nsenter: tuple[str, ...], d: Path, logdir: Path) -> DaemonSpec:
    return DaemonSpec(
        name="snmpd",
        argv=(
            *nsenter,
            "/usr/sbin/snmpd", "-f", "-m", "", "-C",
            "-c", str(d / "snmpd.conf"),
            "-Lf", str(logdir / "snmpd.log"),
            "-u", "Debian-snmp", "-g", "Debian-snmp",
            "-I", "-smux,mteTrigger,mteTriggerConf",
        ),
        cwd=str(d),
        log=str(logdir / "snmpd.log"),
        out=str(logdir / "snmpd.out"),
        env={"PATH": PATH_ENV, "SNMP_PERSISTENT_DIR": str(d / "persist"), "MIBS": ""},
    )


def spawn(spec: DaemonSpec, pidfile: Path) -> int:
    """Start a daemon in its own session; record and return its PID."""
    with open(spec.out, "ab") as out:
        proc = subprocess.Popen(  # noqa: S603 - argv built by us
            list(spec.argv),
            cwd=spec.cwd,
            env=spec.env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _children[proc.pid] = proc
    pidfile.write_text(f"{proc.pid}\n")
    log.debug("started %s pid %d", spec.name, proc.pid)
    return proc.pid


def read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def alive(pid: int | None) -> bool:
    """True if ``pid`` runs (a zombie or a reaped child is not alive)."""
    if not pid:
        return False
    proc = _children.get(pid)
    if proc is not None and proc.poll() is not None:
        _children.pop(pid, None)
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def state_of(pid: int | None) -> str:
    """'running', 'stopped' (SIGSTOP) or 'dead'."""
    if not alive(pid):
        return "dead"
    stat = Path(f"/proc/{pid}/stat").read_text()
    return "stopped" if stat.rsplit(")", 1)[1].split()[0] in ("T", "t") else "running"


def signal_pid(pid: int | None, sig: int) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    if sig == signal.SIGKILL:
        reap(pid)
    return True


def reap(pid: int, timeout_s: float = 2.0) -> None:
    proc = _children.pop(pid, None)
    if proc is not None:
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("pid %d did not exit within %.1f s", pid, timeout_s)
        return
    deadline = time.monotonic() + timeout_s
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)


def terminate(pid: int | None, timeout_s: float = 2.0) -> None:
    """SIGCONT + SIGTERM, then SIGKILL after ``timeout_s``."""
    if not alive(pid):
        return
    assert pid is not None
    signal_pid(pid, signal.SIGCONT)
    signal_pid(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if alive(pid):
        signal_pid(pid, signal.SIGKILL)
    reap(pid, 0.5)


__all__ = [
    "EMPTY_FRR_CONF",
    "EMPTY_NETCONF_STARTUP",
    "DaemonSpec",
    "alive",
    "frr_specs",
    "netconfd_spec",
    "read_pid",
    "signal_pid",
    "snmpd_conf",
    "snmpd_spec",
    "spawn",
    "sshd_config",
    "sshd_spec",
    "state_of",
    "terminate",
]
