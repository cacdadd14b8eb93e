"""A bad argument, file or setting is one line saying what is wrong, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from driftnet.cli import main
from ingest.settings import load_settings
from ingest.transport.config import EmbeddedLogSettings
from ingest.transport.embedded import EmbeddedConsumer
from schemas.errors import ConfigError, TransportError

TENANTS = Path(__file__).resolve().parents[1] / "examples" / "tenants.toml"


def run(args: list[str], tmp_path: Path) -> tuple[int, str]:
    """Exit code and output of ``driftnet ARGS`` ({tmp}: tmp_path), with no exception but
    the exit."""
    result = CliRunner().invoke(main, [a.replace("{tmp}", str(tmp_path)) for a in args])
    assert isinstance(result.exception, SystemExit | None), result.exception
    assert "Traceback" not in result.output
    return result.exit_code, result.output


@pytest.fixture()
def files(tmp_path: Path) -> Path:
    """An empty lake, a plain file, and files that are not what they claim to be."""
    (tmp_path / "lake").mkdir()
    (tmp_path / "afile").write_text("x")
    (tmp_path / "empty.json").write_text("")
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "object.json").write_text("{}")
    (tmp_path / "latin1.toml").write_bytes(b"\xff[[tenant]]\n")
    return tmp_path


@pytest.mark.parametrize(("args", "code", "says"), [
    (["export", "--from-manifest", "{tmp}/missing.json", "--out", "{tmp}/o"], 1,
     "cannot read the manifest: No such file"),
    (["export", "--from-manifest", "{tmp}/empty.json", "--out", "{tmp}/o"], 1,
     "not a driftnet export manifest: (top): Invalid JSON"),
    (["export", "--from-manifest", "{tmp}/list.json", "--out", "{tmp}/o"], 1,
     "not a driftnet export manifest: (top): Input should be an object"),
    (["export", "--from-manifest", "{tmp}/object.json", "--out", "{tmp}/o"], 1,
     "tenant: Field required"),
    (["simulate", "--url", "http://127.0.0.1:9", "--tenants", "{tmp}/latin1.toml"], 1,
     "tenants file is not UTF-8 text"),
    (["simulate", "--url", "localhost:8080", "--tenants", str(TENANTS)], 2,
     "is not an http:// or https:// URL"),
    (["simulate", "--url", "http://h:port", "--tenants", str(TENANTS)], 2, "is not a URL"),
    (["simulate", "--url", "http://127.0.0.1:9", "--tenants", str(TENANTS), "--tenant", "nope"],
     2, "nope not in"),
    (["simulate", "--url", "http://127.0.0.1:9", "--tenants", str(TENANTS), "--concurrency", "0"],
     2, "--concurrency"),
    (["simulate", "--url", "http://127.0.0.1:9", "--tenants", str(TENANTS),
      "--duplicate-rate", "5"], 2, "--duplicate-rate"),
    (["discover", "--lake", "{tmp}/lake", "--tenant", "acme", "--tenants", str(TENANTS),
      "--top", "0"], 2, "--top"),
    (["discover", "--lake", "{tmp}/lake", "--tenant", "acme", "--tenants", str(TENANTS),
      "--since", "99999999999d"], 1, "reach back before year 1"),
    (["discover", "--lake", "{tmp}/lake", "--tenant", "acme", "--tenants", str(TENANTS),
      "--memory-limit", "lots"], 1, "cannot open DuckDB with these settings"),
    (["export", "--lake", "{tmp}/lake", "--tenant", "acme", "--tenants", str(TENANTS),
      "--recipe", "sessions", "--out", "{tmp}/o", "--memory-limit", "lots"], 1,
     "cannot open DuckDB with these settings"),
    (["sql", "--lake", "{tmp}/lake", "--tenant", "acme", "--tenants", str(TENANTS),
      "--max-rows", "0", "select 1"], 2, "--max-rows"),
    (["export", "--lake", "{tmp}/lake", "--tenant", "acme", "--tenants", str(TENANTS),
      "--recipe", "intent", "--out", "{tmp}/o", "--max-prefix", "0"], 2, "--max-prefix"),
    (["sql", "--lake", "{tmp}/lake", "--tenant", "acme", "--tenants", str(TENANTS),
      "--format", "csv", "-o", "{tmp}/afile/out.csv", "select 1"], 1, "driftnet: error:"),
    (["forget", "--lake", "{tmp}/afile", "--tenant", "acme", "--user-id", "u"], 1,
     "driftnet: error:"),
    # a typo'd or unmounted lake must not read as "no tenant is stale" (exit 0)
    (["status", "--lake", "{tmp}/no-such-lake"], 1, "lake directory not found"),
    (["status", "--lake", "{tmp}/afile"], 1, "lake directory not found"),
    # nor an erasure or a rebuild of a mistyped lake as done (forget created one)
    (["forget", "--lake", "{tmp}/no-such-lake", "--tenant", "acme", "--user-id",
      "someone-12345678"], 1, "lake directory not found"),
    (["compact", "--lake", "{tmp}/no-such-lake"], 1, "lake directory not found"),
    # without --tenants too: a mistyped lake is not an unknown tenant (exit 2)
    (["sql", "--lake", "{tmp}/no-such-lake", "--tenant", "acme", "select 1"], 1,
     "lake directory not found"),
    (["discover", "--lake", "{tmp}/no-such-lake", "--tenant", "acme"], 1,
     "lake directory not found"),
    (["export", "--lake", "{tmp}/no-such-lake", "--tenant", "acme", "--recipe", "sessions",
      "--out", "{tmp}/o"], 1, "lake directory not found"),
    # a mistyped tenant's empty receipt read as a completed erasure
    (["forget", "--lake", "{tmp}/lake", "--tenant", "acmee", "--user-id", "u"], 2,
     "unknown tenant 'acmee'"),
    (["replay", "--lake", "{tmp}/no-such-lake", "--tenants", str(TENANTS), "--tenant", "acme",
      "--from", "2026-01-01", "--to", "2026-01-02"], 1, "lake directory not found"),
])
def test_bad_input_is_one_line(files: Path, args: list[str], code: int, says: str) -> None:
    exit_code, output = run(args, files)
    assert exit_code == code, output
    assert says in output, output
    assert not (files / "no-such-lake").exists()


def test_discover_since_year_one_reads_everything(files: Path) -> None:
    """A --since within a day of year 1 prunes no partition (it used to overflow)."""
    for since in ("0001-01-01", "0001-01-01T00:00:00+05:00"):
        exit_code, output = run(["discover", "--lake", "{tmp}/lake", "--tenant", "acme",
                                 "--tenants", str(TENANTS), "--since", since], files)
        assert exit_code == 0, output


@pytest.mark.parametrize(("toml", "says"), [
    (b"[loader\n", "config file is not valid TOML"),
    (b"\xff[loader]\n", "config file is not UTF-8 text"),
])
def test_an_unreadable_config_file_is_a_config_error(tmp_path: Path, toml: bytes,
                                                     says: str) -> None:
    config = tmp_path / "driftnet.toml"
    config.write_bytes(toml)
    with pytest.raises(ConfigError) as raised:
        load_settings(config)
    assert says in str(raised.value)


@pytest.mark.parametrize(("name", "value", "says"), [
    ("DRIFTNET_LOADER", "{bad", "invalid settings: error parsing value for field \"loader\""),
    ("DRIFTNET_KAFKA__BOOTSTRAP_SERVERS", "[1,", "'[1' is not a host:port"),
    ("DRIFTNET_KAFKA__BOOTSTRAP_SERVERS", "broker:abc", "'broker:abc' is not a host:port"),
    ("DRIFTNET_KAFKA__BOOTSTRAP_SERVERS", " , ", "no server in"),
])
def test_a_bad_environment_variable_is_a_config_error(monkeypatch: pytest.MonkeyPatch,
                                                      name: str, value: str, says: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert says in str(raised.value)


def test_kafka_servers_as_the_client_reads_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTNET_KAFKA__BOOTSTRAP_SERVERS", "b1:9092, [::1]:9093,b3,")
    assert load_settings().kafka.bootstrap_servers == "b1:9092, [::1]:9093,b3,"


def test_an_embedded_log_under_a_file_is_a_transport_error(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    settings = EmbeddedLogSettings(path=tmp_path / "afile" / "log.sqlite")
    with pytest.raises(TransportError, match="cannot open the embedded log"):
        EmbeddedConsumer(settings)
