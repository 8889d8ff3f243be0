"""The ``server:`` section of kubetally.yaml and the command line's one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetally.config import load_config
from kubetally.errors import ConfigError
from kubetally.server.config import ServerConfig
from kubetally.testing.server import cli


def test_server_section_is_typed(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("server:\n  host: 0.0.0.0\n  port: 9443\n  report_cache: 0\n", encoding="utf-8")
    section = load_config([good]).settings.server
    assert section == ServerConfig(host="0.0.0.0", port=9443, report_cache=0)
    bad = tmp_path / "bad.yaml"
    bad.write_text("server:\n  port: 0\n  colour: blue\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config([bad])
    text = str(caught.value)
    assert "server.port: Input should be greater than or equal to 1" in text
    assert "server.colour: unknown key" in text and str(bad) in text


def test_server_command_fails_in_one_line(tmp_path: Path) -> None:
    done = cli("server", "--db", str(tmp_path / "missing" / "x.db"), "--prices", "example")
    assert done.returncode == 1 and "does not exist" in done.stderr and "Traceback" not in done.stderr
    done = cli("server", "--db", str(tmp_path / "x.db"))
    assert done.returncode == 1 and "no price book" in done.stderr and "Traceback" not in done.stderr
    done = cli("token", "create", "--db", str(tmp_path / "x.db"), "--role", "admin", "--expires", "soon")
    assert done.returncode == 1 and "--expires" in done.stderr and "Traceback" not in done.stderr
    done = cli("token", "revoke", "0123456789ab", "--db", str(tmp_path / "x.db"))
    assert done.returncode == 1 and "no such token" in done.stderr
