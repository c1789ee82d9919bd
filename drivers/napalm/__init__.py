"""NAPALM bridge: any installed NAPALM driver behind the gateway's driver contract.

Registered as ``napalm`` in the ``agw.drivers`` entry-point group; needs the ``napalm`` extra
(and, for a community driver, its own package, e.g. ``pip install napalm-vyos``).
"""

from drivers.napalm.driver import NAPALM_CAPABILITIES, NapalmDriver, NapalmSettings, napalm_capabilities

__all__ = ["NAPALM_CAPABILITIES", "NapalmDriver", "NapalmSettings", "napalm_capabilities"]
