"""NETCONF driver on our own asyncssh transport (reaches the protocol floor; see bench/).

Entry point: ``netconf = "drivers.netconf:NetconfDriver"`` in the ``agw.drivers`` group.
"""

from drivers.netconf.driver import NetconfDriver, NetconfSettings

__all__ = ["NetconfDriver", "NetconfSettings"]
