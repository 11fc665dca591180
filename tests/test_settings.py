"""Configuration is read from GATEWAY_* variables and every problem is reported at once."""

from __future__ import annotations

import pytest

from gateway.settings import SettingsError, load_settings, parse_nodes


def test_every_problem_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GATEWAY_NODES", raising=False)
    monkeypatch.setenv("GATEWAY_PORT", "99999")
    monkeypatch.setenv("GATEWAY_PARTITION_WIDTH", "week")
    monkeypatch.setenv("GATEWAY_WRITE_TOKENS", "plaintext-secret")
    with pytest.raises(SettingsError) as err:
        load_settings()
    message = str(err.value)
    for name in ("GATEWAY_NODES", "GATEWAY_PORT", "GATEWAY_PARTITION_WIDTH", "GATEWAY_WRITE_TOKENS"):
        assert name in message
    assert "plaintext-secret" not in message  # never echo a secret back


def test_nodes_parse_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_NODES", "b=host=x port=1,a=host=y port=2")
    settings = load_settings()
    assert list(settings.node_dsns.items()) == [("b", "host=x port=1"), ("a", "host=y port=2")]


def test_duplicate_node_is_an_error() -> None:
    with pytest.raises(ValueError, match="twice"):
        parse_nodes("a=host=x,a=host=y")


def test_observability_settings_are_validated_together(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_NODES", "a=host=x")
    monkeypatch.setenv("GATEWAY_METRICS_PORT", "70000")
    monkeypatch.setenv("GATEWAY_LOG_FORMAT", "xml")
    monkeypatch.setenv("GATEWAY_LOG_LEVEL", "loud")
    monkeypatch.setenv("GATEWAY_COMPRESS_MIN_BYTES", "-1")
    with pytest.raises(SettingsError) as err:
        load_settings()
    for name in ("GATEWAY_METRICS_PORT", "GATEWAY_LOG_FORMAT", "GATEWAY_LOG_LEVEL", "GATEWAY_COMPRESS_MIN_BYTES"):
        assert name in str(err.value)


def test_metrics_listener(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_NODES", "a=host=x")
    assert load_settings().metrics_listener == ("127.0.0.1", 9464)  # its own port by default
    monkeypatch.setenv("GATEWAY_METRICS_HOST", "10.0.0.5")
    assert load_settings().metrics_listener == ("10.0.0.5", 9464)
    monkeypatch.setenv("GATEWAY_METRICS_PORT", "8000")  # = GATEWAY_PORT: on the public port, no listener
    assert load_settings().metrics_listener is None
    monkeypatch.setenv("GATEWAY_METRICS_PORT", "0")  # off
    assert load_settings().metrics_listener is None
