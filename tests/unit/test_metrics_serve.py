"""`agw serve --metrics-listen`: a real gateway process serves /metrics, which parses with the
Prometheus text parser; a bad address is refused before anything starts."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from gateway import cli


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_agw_serve_exposes_metrics_that_parse(tmp_path: Path) -> None:
    agw = shutil.which("agw", path=str(Path(sys.executable).parent)) or "agw"
    grpc_port, metrics_port = free_port(), free_port()
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen([agw, "serve", "--listen", f"127.0.0.1:{grpc_port}", "--data-dir", str(tmp_path / "data"),
                             "--metrics-listen", f"127.0.0.1:{metrics_port}"], stdout=log, stderr=subprocess.STDOUT)
    try:
        text = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not text:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2) as reply:
                    text = reply.read().decode()
            except OSError:
                time.sleep(0.2)
        families = {f.name: f for f in text_string_to_metric_families(text)}
        for name in ("agw_activations", "agw_tasks", "agw_activation_duration_seconds", "agw_device_errors",
                     "agw_journal_commit_seconds", "agw_activations_running", "agw_devices_busy",
                     "agw_sessions_open", "agw_grpc_server_handled"):
            assert name in families, sorted(families)
        assert families["agw_activations_running"].samples[0].value == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, (tmp_path / "serve.log").read_text()
    assert f"metrics on http://127.0.0.1:{metrics_port}/metrics" in (tmp_path / "serve.log").read_text()


def test_a_bad_metrics_address_is_refused_before_anything_starts(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli.main, ["serve", "--data-dir", str(tmp_path), "--metrics-listen", "nowhere"])
    assert result.exit_code != 0 and "--metrics-listen must be HOST:PORT" in result.output
    assert not (tmp_path / "journal.db").exists()


def test_a_metrics_port_in_use_stops_the_gateway_with_a_clear_error(tmp_path: Path) -> None:
    agw = shutil.which("agw", path=str(Path(sys.executable).parent)) or "agw"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run([agw, "serve", "--listen", f"127.0.0.1:{free_port()}", "--data-dir", str(tmp_path / "d"),
                               "--metrics-listen", f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and f"--metrics-listen 127.0.0.1:{port}" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
