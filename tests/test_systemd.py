"""The systemd units: the keys the issue asks for, and `systemd-analyze verify` where present."""

from __future__ import annotations

import configparser
import itertools
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

UNITS = ROOT / "systemd"


def _unit(name: str) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> every value (systemd keys may repeat)."""
    out: dict[str, dict[str, list[str]]] = {}
    section = ""
    for raw in (UNITS / name).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            out.setdefault(section, {})
            continue
        key, _, value = line.partition("=")
        out[section].setdefault(key, []).append(value)
    return out


def test_daemon_unit_is_notify_with_watchdog_reload_and_state() -> None:
    s = _unit("monitor.service")["Service"]
    assert s["Type"] == ["notify"]
    assert s["WatchdogSec"] and s["Restart"] == ["on-failure"]
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert s["StateDirectory"] == ["monitor"]
    assert s["DynamicUser"] == ["yes"] or "User" in s
    assert s["ExecStart"][0].endswith("monitor run")


def test_daemon_unit_is_hardened_and_every_setting_has_a_comment() -> None:
    s = _unit("monitor.service")["Service"]
    for key, value in {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    }.items():
        assert s[key] == [value], key
    assert "@system-service" in s["SystemCallFilter"]
    # Every setting line follows a comment line (or another setting right under one).
    lines = (UNITS / "monitor.service").read_text(encoding="utf-8").splitlines()
    start = lines.index("# Hardening: each line takes away something the daemon never needs.")
    block = [line for line in lines[start:] if line and not line.startswith("[")]
    for prev, line in itertools.pairwise(block):
        if not line.startswith("#") and "=" in line and not line.startswith("WantedBy"):
            assert prev.startswith("#"), f"no comment above {line!r}"


def test_secrets_come_as_credentials_never_on_the_command_line() -> None:
    for name in ("monitor.service", "monitor-once.service"):
        s = _unit(name)["Service"]
        assert s["LoadCredential"], name
        for cmd in s["ExecStart"]:
            assert "://" not in cmd and "$" not in cmd
        assert not any("://" in v for v in s.get("Environment", []))


def test_timer_runs_the_once_service() -> None:
    once = _unit("monitor-once.service")["Service"]
    assert once["Type"] == ["oneshot"] and once["ExecStart"][0].endswith("run --once")
    timer = _unit("monitor-once.timer")
    assert timer["Timer"]["OnCalendar"] and timer["Timer"]["Persistent"] == ["true"]
    assert timer["Install"]["WantedBy"] == ["timers.target"]


def test_readme_covers_install_enable_logs_upgrade() -> None:
    text = (UNITS / "README.md").read_text(encoding="utf-8")
    for word in ("## Install", "systemctl enable", "journalctl", "## Upgrade", "reload"):
        assert word in text


@pytest.mark.parametrize("name", ["monitor.service", "monitor-once.service", "monitor-once.timer"])
def test_systemd_analyze_verify(name: str, tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed")
    # Point ExecStart at this checkout's entry point so verify can check it exists.
    exe = ROOT / ".venv" / "bin" / "monitor"
    if not exe.exists():
        pytest.skip("no .venv/bin/monitor to point the units at")
    for unit in ("monitor.service", "monitor-once.service", "monitor-once.timer"):
        text = (UNITS / unit).read_text(encoding="utf-8")
        (tmp_path / unit).write_text(text.replace("/opt/monitor/.venv/bin/monitor", str(exe)))
    result = subprocess.run(
        [tool, "verify", "--man=no", str(tmp_path / name)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0 and "Failed to" in result.stderr and "bus" in result.stderr.lower():
        pytest.skip(f"systemd-analyze cannot run here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


def test_unit_files_parse_as_ini() -> None:
    # configparser catches stray syntax (a key outside any section, a broken header).
    for path in UNITS.glob("monitor*.*"):
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read_string(path.read_text(encoding="utf-8"))
        assert parser.sections(), path
