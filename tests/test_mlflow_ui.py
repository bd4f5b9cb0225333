"""`headlens mlflow-ui` serves on 127.0.0.1 and takes its server down when it is stopped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from app.config import REPO_ROOT
from tests.conftest import fresh_mlflow_store


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def test_stopping_mlflow_ui_stops_the_server(tmp_path: Path, _mlflow_template: Path) -> None:
    port = free_port()
    fresh_mlflow_store(tmp_path / "mlruns", _mlflow_template)  # what is served is not the point
    ui = subprocess.Popen(
        [sys.executable, "-m", "app", "--mlruns", str(tmp_path / "mlruns"), "mlflow-ui", "--port", str(port)],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not answers(port):
            assert ui.poll() is None, ui.communicate()[0]
            assert time.monotonic() < deadline, "the MLflow UI never answered"
            time.sleep(0.5)
        ui.send_signal(signal.SIGTERM)
        assert ui.wait(timeout=30) == 0
        deadline = time.monotonic() + 15
        while answers(port) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert not answers(port)
        with socket.socket() as again:  # the port is free: no worker kept it
            # (SO_REUSEADDR: the probes' closed connections may linger in TIME_WAIT; only a
            # socket still listening on the port makes the bind fail then)
            again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            again.bind(("127.0.0.1", port))
    finally:
        if ui.poll() is None:
            ui.kill()
