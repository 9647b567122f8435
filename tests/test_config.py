"""Configuration: the contract users and scripts rely on."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.config import Secret, load_settings, parse_duration
from monitor.exceptions import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "monitor.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_full_example_loads(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        """\
database: state/monitor.db
rules: rules/
feeds:
  - url: https://example.org/feed.xml
    name: Example
    interval: 15m
  - url: https://example.net/atom
channels:
  inbox: "mailto://127.0.0.1:2525?from=monitor@example.org&to=me@example.org&mode=insecure"
  team: "${MONITOR_SLACK_URL}"
fetch:
  allow_networks: [127.0.0.0/8]
""",
    )
    s = load_settings(p, environ={"MONITOR_SLACK_URL": "json://127.0.0.1:9/hook/tok3n"})
    assert s.database == tmp_path / "state" / "monitor.db"
    assert s.rules == (tmp_path / "rules/",)
    assert [f.interval for f in s.feeds] == [900.0, 900.0]
    assert s.feeds[0].name == "Example" and s.feeds[1].name is None
    assert s.channels["team"].reveal() == "json://127.0.0.1:9/hook/tok3n"
    assert s.fetch.allow_networks == ("127.0.0.0/8",)
    # The token never shows in a repr of the settings.
    assert "tok3n" not in repr(s)


def test_every_error_is_reported_with_file_and_line(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        """\
feeds:
  - url: ftp://example.org/feed
  - url: https://example.org/a
    interval: soon
    colour: blue
channels:
  team: "${NOT_SET_ANYWHERE}"
  bad: "nonsense://whatever/SECRETPART"
fetch:
  allow_networks: [not-a-net]
frobnicate: 1
""",
    )
    with pytest.raises(ConfigError) as e:
        load_settings(p, environ={})
    lines = e.value.errors
    assert f"{p}:2: feeds[0].url: expected an http(s) URL" in lines
    assert any(line.startswith(f"{p}:4: feeds[1].interval:") for line in lines)
    assert any(line.startswith(f"{p}:5: feeds[1].colour: unknown key") for line in lines)
    assert any(
        line.startswith(f"{p}:7: channels.team: environment variable NOT_SET_ANYWHERE")
        for line in lines
    )
    assert any(line.startswith(f"{p}:8: channels.bad: not a URL apprise") for line in lines)
    assert any(line.startswith(f"{p}:10: fetch.allow_networks[0]:") for line in lines)
    assert any(line.startswith(f"{p}:11: frobnicate: unknown setting") for line in lines)
    assert len(lines) == 7
    # A channel URL is never quoted in an error (it may hold a token).
    assert "SECRETPART" not in str(e.value)


def test_missing_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="monitor init"):
        load_settings(tmp_path / "nope.yaml", environ={})


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    p = write(tmp_path, "feeds:\n  - url: [unclosed\n")
    with pytest.raises(ConfigError, match=r"monitor.yaml:\d+: invalid YAML"):
        load_settings(p, environ={})


def test_python_tags_are_refused(tmp_path: Path) -> None:
    """FAULTS C17 for the configuration file."""
    p = write(tmp_path, "database: !!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(ConfigError):
        load_settings(p, environ={})
    assert not (tmp_path / "pwned").exists()


def test_env_var_names_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = write(tmp_path, "feeds: []\n")
    monkeypatch.setenv("MONITOR_CONFIG", str(p))
    assert load_settings(environ={}).path == p


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("30s", 30), ("15m", 900), ("2h", 7200), ("1d", 86400), (45, 45), ("1.5h", 5400)],
)
def test_parse_duration(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["0m", "-5", "soon", True, "5 weeks"])
def test_parse_duration_rejects(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


def test_secret_hides_itself() -> None:
    s = Secret("json://host/TOKEN")
    assert "TOKEN" not in repr(s) and "TOKEN" not in str(s) and "TOKEN" not in f"{s}"
    assert s.reveal() == "json://host/TOKEN"
