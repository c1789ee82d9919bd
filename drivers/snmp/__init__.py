"""SNMP driver (pysnmp 7, asyncio): varbinds rendered by a service template, one SET per change.

Registered as ``snmp`` in the ``agw.drivers`` entry-point group; needs the ``snmp`` extra.
"""

from drivers.snmp.driver import SnmpDriver, SnmpSettings

__all__ = ["SnmpDriver", "SnmpSettings"]
