"""Host-side operations: namespaces, veths, routes, UTS mounts, users, process sweeps.

Only objects the lab created are touched: namespaces named ``agw-<lab>-<node>``, veths named in
the lab state, the lab range's ``unreachable`` route, UTS bind mounts inside the state directory,
and login users the lab created (marked by their GECOS field).
"""

from __future__ import annotations

import grp
import json
import logging
import os
import pwd
import signal
import subprocess
from pathlib import Path
from typing import Any

from lab.errors import LabConflictError, LabError, NOT_ROOT_MESSAGE, NotRootError

log = logging.getLogger(__name__)

NETNS_DIR = Path("/run/netns")
LAB_GECOS = "agw lab user"


def require_root() -> None:
    if os.geteuid() != 0:
        raise NotRootError(NOT_ROOT_MESSAGE)


def run(argv: list[str], *, input_: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, input=input_, capture_output=True, text=True, check=False)  # noqa: S603
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(argv[:6])}{' ...' if len(argv) > 6 else ''} failed: {proc.stderr.strip()[:500]}")
    return proc


def ip_batch(lines: list[str], *, netns: str | None = None, check: bool = True) -> None:
    if not lines:
        return
    argv = ["ip"] + (["-n", netns] if netns else []) + (["-force"] if not check else []) + ["-batch", "-"]
    run(argv, input_="\n".join(lines) + "\n", check=check)


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def netns_list() -> set[str]:
    try:
        return {p.name for p in NETNS_DIR.iterdir()}
    except FileNotFoundError:
        return set()


def netns_inode(name: str) -> int | None:
    try:
        return os.stat(NETNS_DIR / name).st_ino
    except OSError:
        return None


def pids_in_netns(inodes: set[int]) -> list[int]:
    """Every process whose network namespace is one of ``inodes``."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/net").st_ino in inodes:
                out.append(int(entry))
        except OSError:
            continue
    return out


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        for sig in (signal.SIGCONT, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break


def link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def routes() -> list[dict[str, Any]]:
    out = run(["ip", "-j", "-4", "route", "show", "table", "main"]).stdout
    parsed: list[dict[str, Any]] = json.loads(out or "[]")
    return parsed


def unreachable_route_present(cidr: str) -> bool:
    return any(r.get("dst") == cidr and r.get("type") == "unreachable" for r in routes())


def add_unreachable_route(cidr: str) -> bool:
    """Add ``unreachable CIDR`` unless present; True if this call added it."""
    if unreachable_route_present(cidr):
        return False
    run(["ip", "route", "add", "unreachable", cidr])
    return True


def del_unreachable_route(cidr: str) -> None:
    run(["ip", "route", "del", "unreachable", cidr], check=False)


NEIGH_SYSCTL = Path("/proc/sys/net/ipv4/neigh/default")


def neigh_gc_thresholds() -> tuple[int, int, int]:
    """The root namespace's ARP table thresholds (net.ipv4.neigh.default.gc_thresh1/2/3)."""
    t1, t2, t3 = (int((NEIGH_SYSCTL / f"gc_thresh{i}").read_text()) for i in (1, 2, 3))
    return t1, t2, t3


def set_neigh_gc_thresholds(values: tuple[int, int, int]) -> None:
    for i, v in sorted(zip((1, 2, 3), values), reverse=True):  # largest first: 3, 2, 1
        (NEIGH_SYSCTL / f"gc_thresh{i}").write_text(f"{v}\n")


def make_uts(path: Path, hostname: str) -> None:
    if is_mountpoint(path):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    run(["unshare", f"--uts={path}", "hostname", hostname])


def is_mountpoint(path: Path) -> bool:
    try:
        mounts = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return False
    p = str(path)
    return any(line.split()[4] == p for line in mounts.splitlines() if len(line.split()) > 4)


def umount(path: Path) -> None:
    for _ in range(4):  # a file can be mounted over more than once
        if not is_mountpoint(path):
            return
        run(["umount", "-l", str(path)], check=False)


def ensure_user(name: str, password: str, groups: tuple[str, ...] = ()) -> None:
    """Create (or update) a lab login user. A non-lab account of that name is never touched."""
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        argv = ["useradd", "-m", "-s", "/bin/bash", "-c", LAB_GECOS]
        if groups:
            argv += ["-G", ",".join(groups)]
        run(argv + [name])
    else:
        if pw.pw_uid < 1000:
            raise LabConflictError(f"user {name} is a system account (uid {pw.pw_uid}); the lab will not log in as it")
        if pw.pw_gecos != LAB_GECOS:
            # An account made by hand (e.g. by the lab-notes recipe): use it only if the password matches.
            if not password_matches(name, password):
                raise LabConflictError(
                    f"user {name} exists, was not created by the lab and has another password; "
                    "the lab will not change it: choose another user name in the topology's credentials"
                )
        missing = [g for g in groups if name not in grp.getgrnam(g).gr_mem]
        if missing:
            run(["usermod", "-a", "-G", ",".join(missing), name])
        if pw.pw_gecos != LAB_GECOS or password_matches(name, password):
            return
    run(["chpasswd"], input_=f"{name}:{password}\n")


def password_matches(name: str, password: str) -> bool:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
        import spwd

    try:
        hashed = spwd.getspnam(name).sp_pwdp
    except KeyError:
        return False
    return bool(hashed) and crypt.crypt(password, hashed) == hashed


def chown_tree(path: Path, user: str, group: str) -> None:
    pw = pwd.getpwnam(user)
    gid = grp.getgrnam(group).gr_gid
    for root, dirs, files in os.walk(path):
        os.chown(root, pw.pw_uid, gid)
        for f in files:
            os.chown(os.path.join(root, f), pw.pw_uid, gid, follow_symlinks=False)


def ssh_host_key(path: Path, *, comment: str) -> None:
    """A new ed25519 SSH host key at ``path`` (and ``path``.pub), replacing any key there."""
    path.unlink(missing_ok=True)
    path.with_name(path.name + ".pub").unlink(missing_ok=True)
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])


def user_ids(user: str) -> tuple[int, int]:
    pw = pwd.getpwnam(user)
    return pw.pw_uid, pw.pw_gid


__all__ = [
    "add_unreachable_route",
    "del_unreachable_route",
    "ensure_user",
    "ip_batch",
    "kill_all",
    "link_exists",
    "make_uts",
    "netns_exists",
    "netns_inode",
    "netns_list",
    "pids_in_netns",
    "require_root",
    "routes",
    "run",
    "ssh_host_key",
    "umount",
]
