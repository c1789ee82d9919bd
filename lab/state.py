"""The lab state directory: what a lab created, recorded before it is created.

``$AGW_LAB_DIR`` (default ``/run/agw-lab``) holds one directory per lab, with ``state.json``
(mode 0600: it holds the lab's credentials), ``credentials.yaml``, ``inventory.yaml``, the SSH host
key, the UTS namespace mounts and one directory per node with its configuration, PID and log
files. ``down`` works from this file alone, so it also cleans up after a crash of the runner.
A lock file serialises ``up`` and ``down`` of all labs (the address allocator is shared).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

STATE_FILE = "state.json"


def base_dir() -> Path:
    return Path(os.environ.get("AGW_LAB_DIR", "/run/agw-lab"))


def lab_dir(name: str) -> Path:
    return base_dir() / name


@contextlib.contextmanager
def locked() -> Iterator[None]:
    base = base_dir()
    base.mkdir(parents=True, exist_ok=True)
    os.chmod(base, 0o755)
    with open(base / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def load(name: str) -> dict[str, Any] | None:
    try:
        st: dict[str, Any] = json.loads((lab_dir(name) / STATE_FILE).read_text())
        return st
    except FileNotFoundError:
        return None
    except json.JSONDecodeError:
        return {"name": name, "nodes": {}, "status": "corrupt"}


def save(st: dict[str, Any]) -> None:
    d = Path(st["dir"])
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / (STATE_FILE + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(st, fh, indent=1)
    os.replace(tmp, d / STATE_FILE)


def all_labs() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    base = base_dir()
    if not base.is_dir():
        return out
    for d in sorted(base.iterdir()):
        if (d / STATE_FILE).is_file():
            st = load(d.name)
            if st is not None:
                out.append(st)
    return out


def used_subnets(exclude: str) -> set[ipaddress.IPv4Network]:
    used = set()
    for st in all_labs():
        if st.get("name") == exclude:
            continue
        for n in st.get("nodes", {}).values():
            if n.get("subnet"):
                used.add(ipaddress.IPv4Network(n["subnet"]))
    return used


def owner_of_namespace(ns: str) -> str | None:
    for st in all_labs():
        for n in st.get("nodes", {}).values():
            if n.get("namespace") == ns:
                return str(st.get("name"))
    return None


def all_veths() -> set[str]:
    return {n["veth"] for st in all_labs() for n in st.get("nodes", {}).values() if n.get("veth")}


def write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(path, 0o600)


__all__ = ["all_labs", "base_dir", "lab_dir", "load", "locked", "owner_of_namespace", "save", "used_subnets"]
