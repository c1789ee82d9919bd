"""The CLI driver's parse cache and the pure fast paths: a hit only on equal configuration text,
shared trees never changed by the functions that read them, same results as a fresh parse."""

from __future__ import annotations

import pytest

from drivers.cli import config as cfg
from drivers.cli.driver import unsafe_lines
from tests.unit.test_cli_driver import RUNNING, SETTINGS

AFTER = RUNNING.replace(
    "!\nend",
    "ip route 198.51.100.64/26 Null0\ninterface eth9\n description x\nexit\n!\nend",
).replace(" description loopback-orig", " description changed")
CHANGE = "ip route 198.51.100.64/26 Null0\ninterface eth9\n description x\nexit\n"


def cache(size: int = 4) -> cfg.ParseCache:
    return cfg.ParseCache(strip=SETTINGS.strip_lines, size=size)


def _dump(tree: cfg.HConfig) -> list[tuple[int, str, tuple[str, ...], int, bool]]:
    return [(depth, c.text, tuple(sorted(c.tags)), c.order_weight, c.new_in_config)
            for depth, c in cfg._walk(tree.children)]


def test_hit_only_on_equal_text_and_same_result_as_a_fresh_parse() -> None:
    c = cache()
    first = c.get(RUNNING)
    assert (c.hits, c.misses) == (0, 1)
    assert c.get(RUNNING) is first and (c.hits, c.misses) == (1, 1)
    assert first.canonical == cfg.canonical_text(RUNNING, strip=SETTINGS.strip_lines)
    other = c.get(AFTER)
    assert other is not first and c.misses == 2
    assert other.canonical == cfg.canonical_text(AFTER, strip=SETTINGS.strip_lines)
    assert "description changed" in other.canonical and "description changed" not in first.canonical


def test_keyed_by_cleaned_text_so_the_canonical_form_hits_the_raw_read() -> None:
    c = cache()
    raw = c.get(RUNNING)
    assert c.get(raw.canonical) is raw  # restore parses the snapshot's canonical text: no reparse
    assert c.get(RUNNING.replace("Current configuration:", "Current configuration: 1234 bytes")) is raw


def test_least_recently_used_entry_is_evicted() -> None:
    c = cache(size=2)
    a, b = c.get(RUNNING), c.get(AFTER)
    c.get(RUNNING)  # a is now the most recent
    c.get(RUNNING.replace("hostname cli1", "hostname other"))  # evicts b
    assert c.get(RUNNING) is a
    assert c.get(AFTER) is not b and c.misses == 4


def test_clear_and_size_validation() -> None:
    c = cache()
    a = c.get(RUNNING)
    c.clear()
    assert c.get(RUNNING) is not a
    with pytest.raises(ValueError):
        cfg.ParseCache(size=0)


def test_shared_trees_are_not_changed_by_undo_or_preview() -> None:
    c = cache()
    current, wanted = c.get(AFTER).tree, c.get(RUNNING).tree
    before = (_dump(current), _dump(wanted))
    undo = cfg.undo_lines(current, wanted, rules=SETTINGS.negation_rules())
    assert undo  # the change is undone by something
    cfg.future(wanted, CHANGE)
    assert (_dump(current), _dump(wanted)) == before
    # the same undo again from the shared trees
    assert cfg.undo_lines(current, wanted, rules=SETTINGS.negation_rules()) == undo


def test_cached_hier_config_driver_gives_the_same_trees() -> None:
    from hier_config import get_hconfig

    text = cfg.clean(AFTER, SETTINGS.strip_lines)
    assert cfg.hconfig_driver(cfg.Platform.CISCO_IOS) is cfg.hconfig_driver(cfg.Platform.CISCO_IOS)
    assert cfg.canonical(cfg.parse_clean(text)) == cfg.canonical(get_hconfig(cfg.Platform.CISCO_IOS, text))


@pytest.mark.parametrize("char", ["\n", "\r", "\x00", "\x08", "\x0b", "\x1b", "\x1f", "\x7f"])
def test_every_control_character_but_tab_is_refused(char: str) -> None:
    assert [v.field for v in unsafe_lines(["ok", f"description a{char}b"])] == ["content line 2"]


def test_tab_and_printable_text_pass() -> None:
    assert unsafe_lines(["description tab\tok", "description caf\u00e9 ~!@#$%^&*()", ""]) == []
