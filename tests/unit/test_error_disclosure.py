"""Nothing internal reaches a caller through a task result or an event: the real engine, a real
SQLite journal, the shipped profiles and templates, and a driver of our own contract that fails
where a test says (no device, no network). Every place a ConfigurationError, a JournalError or an
unexpected exception can end up in a result is driven here: the task error and the "failed"
event (runner), a failed confirm, a failed rollback and re-read, a fallout retry (repair), a dry
run, an engine crash, and the planner's violations. What is journaled is what Get and Watch
return, so the journal is what is checked."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import AsyncIterator, ClassVar

import pytest

from drivers.base import Capabilities, ChangeSet, Driver, PayloadFormat, Snapshot, Verification
from drivers.registry import Registry
from gateway.api import convert
from gateway.app import REPO_ROOT
from gateway.engine import Engine
from gateway.engine.runner import ActivationRun
from gateway.errors import ConfigurationError, HostKeyError, InputError, JournalError
from gateway.inventory import CredentialResolver, Inventory, ProfileStore, select_endpoint
from gateway.journal import open_journal
from gateway.model import Action, ActivationRequest, TaskSpec, TaskState
from gateway.render import TemplateStore
from gateway.results import ActivationState

SECRET = "/srv/agw-internal-7c1e"  # no word a lab secret could be (the log redaction masks those)
"""Every path the tests put in an internal error lives under here; a caller must never see it."""
INCIDENT = re.compile(r"\(incident ([0-9a-f]{12}); see the gateway log\)")


class FakeDriver(Driver):
    """Our driver contract in memory; ``fail`` maps a method name to the exception it raises."""

    name = "netconf"
    payload_format: ClassVar[PayloadFormat] = PayloadFormat.XML
    supported = Capabilities(lock=True, candidate=True, confirmed_commit=True, persist_id=True)
    fail: ClassVar[dict[str, BaseException]] = {}
    verify_ok: ClassVar[bool] = True

    def _maybe_fail(self, what: str) -> None:
        exc = type(self).fail.get(what)
        if exc is not None:
            raise exc

    async def open(self) -> None:
        self._maybe_fail("open")
        self._open = True

    async def close(self) -> None:
        self._open = False

    @property
    def is_open(self) -> bool:
        return getattr(self, "_open", False)

    async def lock(self) -> None:
        self._maybe_fail("lock")

    async def unlock(self) -> None:
        self._loaded = False

    def scope_of(self, change: ChangeSet) -> str:
        return "s"

    async def read(self, scope: str) -> Snapshot:
        # a read after a load (until the transaction unlocks) is a rollback's re-read
        self._maybe_fail("reread" if getattr(self, "_loaded", False) else "read")
        return Snapshot(content="before", scope="s")

    async def preview(self, change: ChangeSet, snapshot: Snapshot) -> str:
        return "+ change"

    def diff(self, before: Snapshot, after: Snapshot) -> str:
        return ""

    async def load(self, change: ChangeSet) -> None:
        self._loaded = True
        self._maybe_fail("load")

    async def discard(self) -> None:
        return None

    async def commit(self, *, confirm_timeout_s: int | None = None, persist_id: str | None = None) -> None:
        return None

    async def confirm(self, *, persist_id: str | None = None) -> None:
        self._maybe_fail("confirm")

    async def cancel_commit(self, *, persist_id: str | None = None) -> bool:
        self._maybe_fail("cancel_commit")
        return True

    async def verify(self, change: ChangeSet, before: Snapshot) -> Verification:
        return Verification(ok=type(self).verify_ok, checked=1, readback=Snapshot(content="after", scope="s"))

    async def restore(self, snapshot: Snapshot, undo: str | None = None) -> None:
        self._maybe_fail("restore")


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    FakeDriver.fail, FakeDriver.verify_ok = {}, True
    registry: Registry[Driver] = Registry("agw.test-drivers", Driver)
    registry.register("netconf", FakeDriver)
    inventory = Inventory.from_mapping({"devices": {
        "nc1": {"address": "127.0.0.1", "platform": "netconfd", "port": 1, "credentials": "env:AGW_TEST_NC1",
                "host_key_check": False},
        "nc2": {"address": "127.0.0.1", "platform": "netconfd", "port": 1,
                "credentials": f"file:{SECRET}/credentials.yaml#nc2", "host_key_check": False},
    }})
    eng = Engine(
        journal=open_journal(f"sqlite:///{tmp_path / 'journal.db'}"),
        inventory=inventory,
        profiles=ProfileStore.load(REPO_ROOT / "device_profiles"),
        templates=TemplateStore(root=REPO_ROOT / "templates"),
        credentials=CredentialResolver(environ={"AGW_TEST_NC1_USERNAME": "u", "AGW_TEST_NC1_PASSWORD": "p"}),
        registry=registry,
        select_endpoint=select_endpoint,
    )
    await eng.start()
    try:
        yield eng
    finally:
        await eng.stop(grace_s=2)


def request(device: str = "nc1", *, rid: str = "r1") -> ActivationRequest:
    return ActivationRequest(request_id=rid, tasks=(
        TaskSpec(id="t1", device=device, service="interface", action=Action.CREATE, parameters={"name": "eth1"}),
    ))


async def seen_by_callers(engine: Engine, activation_id: str) -> str:
    """Everything Get and Watch return for the activation, as text."""
    result = await engine.get(activation_id)
    events = await engine.journal.events(activation_id)
    return str(convert.activation_to_proto(result)) + "\n".join(str(convert.event_to_proto(e)) for e in events)


def assert_clean(text: str, caplog: pytest.LogCaptureFixture, *, hidden: str = SECRET) -> set[str]:
    """No internal text in ``text``; every incident it names is in the log with that text."""
    assert hidden not in text
    ids = set(INCIDENT.findall(text))
    assert ids, text
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for incident_id in ids:
        assert re.search(f"incident {incident_id}: .*{re.escape(hidden)}", logged), incident_id
    return ids


async def run(engine: Engine, req: ActivationRequest) -> str:
    aid = (await engine.submit(req)).activation_id
    await engine.wait_idle()
    return aid


async def test_a_credentials_file_path_stays_in_the_log(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    aid = await run(engine, request("nc2"))
    task = (await engine.get(aid)).tasks[0]
    assert task.state == TaskState.FAILED and task.error is not None
    assert task.error.kind == "ConfigurationError" and task.error.phase == "connect"
    assert task.error.message.startswith("gateway configuration error (incident ")
    text = await seen_by_callers(engine, aid)
    assert "failed: [device nc2] gateway configuration error (incident" in text  # the event
    assert len(assert_clean(text, caplog)) == 1  # one error, one incident, in the result and the event


async def test_a_dry_run_error_shows_no_credentials_path(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    result = await engine.dry_run(request("nc2"))
    assert result.tasks[0].state == TaskState.FAILED
    assert_clean(str(convert.activation_to_proto(result)), caplog)


async def test_an_unexpected_exception_in_a_task_is_an_incident(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    FakeDriver.fail = {"load": RuntimeError(f"bug: cannot parse {SECRET}/state")}
    aid = await run(engine, request())
    task = (await engine.get(aid)).tasks[0]
    assert task.error is not None and task.error.kind == "InternalError" and task.error.phase == "push"
    assert task.state == TaskState.ROLLED_BACK  # and it was still rolled back
    assert_clean(await seen_by_callers(engine, aid), caplog)


async def test_a_failed_confirm_shows_no_journal_text(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    FakeDriver.fail = {"confirm": JournalError(f"journal write failed: OperationalError: disk I/O error ({SECRET}/journal.db)")}
    aid = await run(engine, request())
    text = await seen_by_callers(engine, aid)
    assert "confirm failed: [device nc1] the journal is unavailable (incident" in text
    assert_clean(text, caplog)


async def test_failed_rollback_reread_and_fallout_retry_show_no_internal_text(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    FakeDriver.verify_ok = False
    FakeDriver.fail = {"cancel_commit": RuntimeError(f"bug in {SECRET}/a"),
                       "reread": ConfigurationError(f"known_hosts {SECRET}/known_hosts unreadable")}
    aid = await run(engine, request())
    result = await engine.get(aid)
    assert result.state == ActivationState.FALLOUT
    rollback = result.tasks[0].rollback
    assert rollback is not None and rollback.reason.startswith("rollback (none) failed: internal error (incident ")
    assert_clean(await seen_by_callers(engine, aid), caplog)
    # the rollback's re-read failing
    FakeDriver.fail = {"reread": ConfigurationError(f"known_hosts {SECRET}/known_hosts unreadable")}
    aid = await run(engine, request(rid="r2"))
    reason = (await engine.get(aid)).tasks[0].rollback.reason  # type: ignore[union-attr]
    assert reason.startswith("could not re-read the device: [device nc1] gateway configuration error (incident ")
    # a fallout retry whose session cannot be opened
    await engine.ctx.pool.close_all()
    FakeDriver.fail = {"open": HostKeyError.refused(device="nc1", host="127.0.0.1", port=1, changed=False,
                                                    fingerprint="ssh-ed25519 SHA256:k",
                                                    known_hosts=f"{SECRET}/known_hosts")}
    await engine.retry(aid)  # runs as an engine task: the call returns at once
    await engine.wait_idle()
    task = (await engine.get(aid)).tasks[0]
    # the task keeps the error that put it in fallout; the retry's failure is the rollback's reason
    assert task.state == TaskState.FALLOUT and task.error is not None and task.error.kind == "VerificationError"
    assert task.rollback is not None
    assert task.rollback.reason.startswith("retry (none) failed: [device nc1, phase connect] unknown host key")
    assert "the gateway's known_hosts file" in task.rollback.reason
    assert_clean(await seen_by_callers(engine, aid), caplog)


async def test_an_engine_crash_is_recorded_as_an_incident(
    engine: Engine, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def crash(self: ActivationRun) -> None:
        raise RuntimeError(f"bug: {SECRET}/x")

    monkeypatch.setattr(ActivationRun, "run", crash)
    aid = await run(engine, request())
    result = await engine.get(aid)
    assert result.state == ActivationState.FALLOUT
    text = await seen_by_callers(engine, aid)
    assert "the engine stopped on an error: internal error (incident" in text
    assert_clean(text, caplog)


async def test_planner_violations_name_no_gateway_directory(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    shutil.copy(REPO_ROOT / "device_profiles" / "frr.yaml", profiles)  # no netconfd profile
    registry: Registry[Driver] = Registry("agw.test-drivers", Driver)
    eng = Engine(
        journal=open_journal(f"sqlite:///{tmp_path / 'journal.db'}"),
        inventory=Inventory.from_mapping({"devices": {"nc1": {"address": "127.0.0.1", "platform": "netconfd",
                                                               "port": 1, "credentials": "env:X"}}}),
        profiles=ProfileStore.load(profiles), templates=TemplateStore(root=REPO_ROOT / "templates"),
        credentials=CredentialResolver(environ={}), registry=registry, select_endpoint=select_endpoint,
    )
    with pytest.raises(InputError) as info:
        eng.plan(request())
    (violation,) = info.value.violations
    assert violation.field == "tasks[0].device"
    assert violation.reason.startswith("platform 'netconfd': gateway configuration error (incident ")
    assert_clean(violation.reason, caplog, hidden=str(profiles))


def test_the_netconf_drivers_catch_all_keeps_a_bugs_text_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    from drivers.netconf.driver import translate
    from gateway.errors import DeviceError, Phase

    exc = translate(KeyError(f"{SECRET}/state"), device="nc1", phase=Phase.PUSH)
    assert type(exc) is DeviceError and not exc.retryable
    assert exc.message.startswith("unexpected error in the NETCONF driver: internal error (incident ")
    assert_clean(exc.message, caplog)
