"""A real redis-server (Debian's package) on loopback for one test: no persistence, stopped on exit."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.live import LOOPBACK, free_port, wait_until

STOP_TIMEOUT = 5.0


def redis_binary() -> str:
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
    )
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("redis-server is missing: `make test` installs it (tools/ensure-debian-packages.sh redis-server)")
    pytest.skip("redis-server is not installed (Debian package redis-server; `make test` installs it)")


class RedisServer:
    def __init__(self, directory: Path):
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def start(self) -> RedisServer:
        command = [
            redis_binary(),
            "--bind", LOOPBACK, "--port", str(self.port), "--save", "", "--appendonly", "no",
            "--dir", str(self.directory), "--protected-mode", "yes",
        ]  # fmt: skip
        with (self.directory / f"redis-{self.port}.log").open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        if not wait_until(self._answers, timeout=10):
            self.stop()
            pytest.fail(f"redis-server did not start on {LOOPBACK}:{self.port}")
        return self

    def _answers(self) -> bool:
        try:
            with socket.create_connection((LOOPBACK, self.port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT)
        deadline = time.monotonic() + STOP_TIMEOUT
        while self._answers() and time.monotonic() < deadline:
            time.sleep(0.05)
