"""SSH CLI driver for IOS-like devices (FRR/vtysh in the lab), on scrapli 2.x.

Registered as ``cli`` in the ``agw.drivers`` entry-point group. Pure parts, usable without a
device: :mod:`drivers.cli.config` (parse, canonical text, read-back check, generated undo),
:mod:`drivers.cli.errors` (rejected-line detection), :mod:`drivers.cli.checks` (TTP checks).
"""

from drivers.cli.driver import CliDriver

__all__ = ["CliDriver"]
