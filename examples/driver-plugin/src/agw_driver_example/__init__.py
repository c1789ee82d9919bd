"""An example third-party driver for the activation gateway (``agw.drivers`` entry point ``example-snmp``)."""

from agw_driver_example.driver import (
    FIELDS,
    ExampleSystemDriver,
    load_profile,
    parse_change,
    profile_path,
)

__all__ = ["FIELDS", "ExampleSystemDriver", "load_profile", "parse_change", "profile_path"]
