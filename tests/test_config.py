"""Settings: one place, flags over environment over defaults, clear errors, documented."""

from __future__ import annotations

import pytest

from realtime.config import SETTINGS, Settings, SettingsError, parse_duration

from .support import ROOT


def test_defaults_are_those_the_readme_promises():
    settings = Settings.load(environ={})
    assert settings.port == 8000 and settings.host == "127.0.0.1"
    assert settings.redis_url is None
    assert settings.timeline_max_age == 30 * 86400
    assert settings.timeline_max_length == 800
    assert settings.dev_signin is True


def test_flags_win_over_the_environment():
    settings = Settings.load({"port": "9001"}, environ={"PORT": "9000", "TIMELINE_MAX_AGE": "12h"})
    assert settings.port == 9001
    assert settings.timeline_max_age == 12 * 3600


def test_dev_signin_defaults_off_when_google_is_configured_unless_asked_for():
    assert Settings.load(environ={"GOOGLE_CLIENT_ID": "x"}).dev_signin is False
    assert Settings.load(environ={"GOOGLE_CLIENT_ID": "x", "DEV_SIGNIN": "on"}).dev_signin is True


@pytest.mark.parametrize("env, value", [
    ({"PORT": "eighty"}, "eighty"), ({"PORT": "70000"}, "70000"),
    ({"TIMELINE_MAX_AGE": "0s"}, "0s"), ({"TIMELINE_MAX_LENGTH": "-1"}, "-1"),
    ({"REDIS_URL": "http://x"}, "http://x"), ({"DEV_SIGNIN": "maybe"}, "maybe"),
    ({"LOG_LEVEL": "loud"}, "loud"),
])
def test_a_bad_value_names_the_setting_and_the_value(env, value):
    with pytest.raises(SettingsError) as error:
        Settings.load(environ=env)
    assert value in str(error.value)


def test_settings_survive_the_trip_through_the_environment_to_worker_processes():
    settings = Settings.load({"timeline_max_age": "90s", "redis_url": "redis://127.0.0.1:1/0"}, environ={})
    assert Settings.load(environ=settings.to_environ()) == settings


def test_durations_accept_units():
    assert parse_duration("250ms") == 0.25
    assert parse_duration("2d") == 172800
    assert parse_duration("15") == 15


def test_every_setting_is_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    for option in SETTINGS:
        assert f"`{option.flag}`" in readme and f"`{option.env}`" in readme, option.field


@pytest.mark.parametrize("option", [o for o in SETTINGS if o.parse is not str], ids=lambda o: o.env)
def test_every_bad_value_is_answered_in_words(option):
    """What a user typed wrong is named, with what was expected: never Python's own
    "invalid literal for int()"."""
    with pytest.raises(SettingsError) as refused:
        Settings.load({option.field: "not a value!"}, environ={})
    message = str(refused.value)
    assert f"'not a value!' is not valid for {option.field}: " in message, message
    assert "invalid literal" not in message and "could not convert" not in message, message
