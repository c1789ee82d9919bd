"""`agw report`: the KPIs of a run of the real engine (scripted devices, SQLite journal) - a
completed activation, one rolled back, one fallout retried, one fallout resolved by a person,
one completed after a Rollback request, one still in fallout - computed from the journal, as a
table, as JSON and as an HTML page that headless Chromium renders with its charts."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from drivers.errors import DeviceRejectedError
from gateway import report as kpi
from gateway.cli import main
from gateway.engine import Engine
from gateway.report_html import BAR, FALLOUT, render
from gateway.results import ActivationState
from tests.scripted_gateway import Gateway, kv, request


async def _fallout(gw: Gateway, engine: Engine, device: str, rid: str) -> str:
    gw.net.mismatch(device)
    gw.net.fail(device, "restore", DeviceRejectedError("restore refused <b>bold</b>"))
    result = await gw.run(engine, kv("a", device, "if.ge1", "up", service="kv"), request_id=rid)
    assert result.state == ActivationState.FALLOUT
    return result.id


async def a_day(gw: Gateway, engine: Engine) -> dict[str, str]:
    ids = {}
    ids["ok"] = (await gw.run(engine, kv("a", "r1", "if.ge1", "up"), request_id="ok")).id
    ids["ordered"] = (await engine.submit(request(kv("a", "r2", "if.ge1", "up"), request_id="o1",
                                                  order_ref="ORD-7"))).activation_id
    await engine.wait_idle()
    gw.net.fail("c1", "load", DeviceRejectedError("no such thing"))
    ids["rolled"] = (await gw.run(engine, kv("a", "c1", "if.ge1", "up"), request_id="rb")).id
    ids["retried"] = await _fallout(gw, engine, "c2", "f1")
    await engine.retry(ids["retried"])
    await engine.wait_idle()
    ids["resolved"] = await _fallout(gw, engine, "c2", "f2")
    await engine.resolve(ids["resolved"], "a", note="fixed by hand")
    ids["undone"] = (await gw.run(engine, kv("a", "r1", "if.ge2", "up"), request_id="undo")).id
    await engine.rollback(ids["undone"])
    await engine.wait_idle()
    ids["open"] = await _fallout(gw, engine, "c1", "f3")
    return ids


async def test_kpis_of_a_day(gw: Gateway, engine: Engine, tmp_path: Path) -> None:
    ids = await a_day(gw, engine)
    now = datetime.now(timezone.utc)
    since, until = now - timedelta(hours=1), now + timedelta(minutes=1)
    rows = await engine.journal.kpi_rows(since, until)
    r = kpi.compute(rows, since=since, until=until, groups_of=lambda d: {"core"} if d.startswith("r") else set())
    o = r.overall
    assert o.count == 7
    states = {a.id: a.state for a in rows.activations}
    assert states[ids["retried"]] == "rolledBack" and states[ids["resolved"]] == "failed"
    assert o.fallout_rate == pytest.approx(3 / 7)  # retried, resolved, open
    assert o.rollback_rate == pytest.approx(3 / 7)  # rolled, retried, undone
    assert o.first_time_right_rate == pytest.approx(2 / 7)  # ok and ordered: nothing else completed untouched
    assert o.fallout_s.n == 2 and o.open_fallout == 1  # two episodes ended (retry, resolve), one open
    assert o.completion_s.n == 7 and o.completion_s.p50 is not None and o.completion_s.p99 >= o.completion_s.p50
    (reason, n), = r.top_reasons
    assert n == 3 and "restore refused" in reason
    by_service = {f.key: f for f in r.by["service"]}
    assert set(by_service) == {"kv"} and by_service["kv"].count == 7
    by_platform = {f.key: f.count for f in r.by["platform"]}
    assert by_platform == {"scripted-nc": 3, "scripted-cli": 4}
    assert {f.key: f.count for f in r.by["group"]} == {"core": 3, "(no group)": 4}
    assert {f.key: f.count for f in r.by["order_ref"]} == {"ORD-7": 1, "(none)": 6}

    text = kpi.text_table(r)
    assert "FIRST-TIME-RIGHT" in text and "restore refused" in text and "ORD-7" in text
    assert json.loads(json.dumps(kpi.as_json(r)))["overall"]["count"] == 7
    page = render(r)
    assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page  # device text escaped


async def test_agw_report_reads_the_journal(gw: Gateway, engine: Engine, tmp_path: Path) -> None:
    await a_day(gw, engine)
    page = tmp_path / "kpi.html"
    result = await asyncio.to_thread(CliRunner().invoke, main, ["report", "--journal", f"sqlite:///{gw.journal_path}",
                                                                "--since", "1h", "--html", str(page)])
    assert result.exit_code == 0, result.output
    assert "BY PLATFORM" in result.output and "TOP FALLOUT REASONS" in result.output and page.is_file()
    as_json = await asyncio.to_thread(CliRunner().invoke, main,
                                      ["report", "--journal", f"sqlite:///{gw.journal_path}", "--json"])
    assert as_json.exit_code == 0 and json.loads(as_json.output)["overall"]["count"] == 7
    bad = await asyncio.to_thread(CliRunner().invoke, main, ["report", "--data-dir", str(tmp_path / "nowhere")])
    assert bad.exit_code != 0 and "no journal" in bad.output


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is installed by make setup")
async def test_the_html_report_renders_its_charts_in_chromium(gw: Gateway, engine: Engine, tmp_path: Path) -> None:
    from PIL import Image

    await a_day(gw, engine)
    now = datetime.now(timezone.utc)
    since, until = now - timedelta(hours=1), now + timedelta(minutes=1)
    r = kpi.compute(await engine.journal.kpi_rows(since, until), since=since, until=until)
    page = tmp_path / "kpi.html"
    page.write_text(render(r), encoding="utf-8")
    shot = tmp_path / "kpi.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={shot}", "--window-size=1000,1400", page.as_uri()],
                   check=True, capture_output=True, timeout=90)
    image = Image.open(shot).convert("RGB")
    assert image.size == (1000, 1400)
    colors = image.getcolors(maxcolors=1_000_000) or []
    count = {rgb: n for n, rgb in colors}

    def pixels(hex_color: str) -> int:
        rgb = tuple(int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
        return count.get(rgb, 0)  # type: ignore[call-overload]

    assert pixels(BAR) > 500, "the completion-time histogram's bars are drawn"
    assert pixels(FALLOUT) > 200, "the fallout bars (over time, top reasons) are drawn"
    dark = sum(n for n, (red, green, blue) in colors if red + green + blue < 200)
    assert dark > 2000, "text is drawn"


def test_a_reason_is_folded_so_that_one_cause_counts_once() -> None:
    a = kpi.fold("rollback (none) failed: [device nc2, phase lock] lock denied by session 31, incident 5a9a8e174339")
    b = kpi.fold("rollback (none) failed: [device r1, phase lock] lock denied by session 7, incident 0c1d2e3f4a5b")
    assert a == b == "rollback (none) failed: [device *, phase lock] lock denied by session #, incident #"
