"""The ``agw`` command.

Sub-commands are grouped by concern; each group lives beside the code it drives
(``agw lab ...`` in :mod:`lab.cli`). Every command that shows state has ``--json``.
"""

from __future__ import annotations

import logging

import click

from lab.cli import lab


@click.group()
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def main(verbose: int) -> None:
    """agw: the network activation gateway."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


main.add_command(lab)
