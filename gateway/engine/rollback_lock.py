"""How a rollback gets the device back to itself: its confirmed-commit timer cancelled, its
datastore lock taken.

**The timer.** A confirmed commit of this activation may be pending on the device (the journal
said so before the commit was sent: a rebuilt transaction knows it too). :func:`cancel_timer`
cancels it by its persist-id; the device then reverts at once. A device may answer that none is
pending (it never got the commit, the timer already fired, or the commit is pending in a state its
persist-id does not reach: netconfd, when the session that sent the commit died while the commit
was being applied, keeps it pending until its timer and answers ``cancel-commit`` with "persistent
confirmed commit not active"). Whichever it is, the device's own timer reverts whatever is pending
within ``confirm_timeout_s``: from then on the rollback may wait that long for the lock.

**The lock.** :func:`lock_for_rollback` asks for the datastore lock again while it is denied: the
session of a gateway that just died, or of one frozen, holds it until the device lets that session
go (:data:`ROLLBACK_LOCK_RETRY`, about 10 s), and, after a cancel that found nothing, a commit
pending on the device holds it until its timer fires (netconfd: "cannot perform the operation with
confirmed-commit pending"): the wait then lasts until the timer's bound, with an event saying so.
A rollback that still gets no lock falls out, with the reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from drivers.base import Driver, RetryPolicy
from gateway.engine.lifecycle import Leg, jitter, retry_delay_s
from gateway.errors import LockDeniedError, Phase

if TYPE_CHECKING:
    from gateway.engine.transaction import DeviceTransaction

log = logging.getLogger(__name__)

ROLLBACK_LOCK_RETRY = RetryPolicy(attempts=6, initial_delay_s=0.5, max_delay_s=4.0, deadline_s=12.0)
"""How long a rollback keeps asking for a denied datastore lock (about 10 s)."""
TIMER_GRACE_S = 10.0
"""Added to ``confirm_timeout_s``: the device's timer fires, then its revert takes a moment."""
TIMER_POLL_S = 2.0
"""How often the lock is asked for while waiting for the device's timer."""


async def cancel_timer(txn: DeviceTransaction, drv: Driver, leg: Leg, methods: list[str]) -> None:
    """Cancel this activation's confirmed commit on the device by its persist-id. When the device
    says none is pending, whatever is pending there reverts by its own timer: from now on the lock
    may be waited for until then (:func:`lock_for_rollback`)."""
    await txn.record(leg, Phase.ROLLBACK, message=f"cancelling confirmed commit {txn.persist_id}")
    reverted = await txn.call(Phase.ROLLBACK, drv.cancel_commit(persist_id=txn.pid()))
    methods.append("cancel-commit" if reverted else "device-timer")
    txn.armed = False
    if not reverted:
        txn.timer_until = time.monotonic() + txn.profile.confirm_timeout_s + TIMER_GRACE_S


async def lock_for_rollback(txn: DeviceTransaction, drv: Driver, leg: Leg) -> None:
    """The datastore lock for a rollback (module docstring); :class:`LockDeniedError` when it
    stays denied."""
    attempt, first, waiting = 1, time.monotonic(), False
    while True:
        try:
            await txn.call(Phase.LOCK, drv.lock())
            txn.locked = True
            return
        except LockDeniedError as exc:
            now = time.monotonic()
            delay_s = retry_delay_s(ROLLBACK_LOCK_RETRY, attempt, elapsed_s=now - first, draw=jitter())
            if delay_s is None:
                until = txn.timer_until
                if until is None or now >= until:
                    raise
                if not waiting:  # once: the wait may be long, and it holds the device
                    waiting = True
                    await txn.record(leg, Phase.ROLLBACK, message=(
                        f"lock denied ({exc.message}); a confirmed commit the device did not cancel reverts by "
                        f"its timer: waiting up to {until - now:.0f} s for it"))
                delay_s = min(TIMER_POLL_S, until - now)
            log.info("rollback on %s: lock denied, asking again in %.1f s", txn.device, delay_s)
            await asyncio.sleep(delay_s)
            attempt += 1


__all__ = ["ROLLBACK_LOCK_RETRY", "TIMER_GRACE_S", "TIMER_POLL_S", "cancel_timer", "lock_for_rollback"]
