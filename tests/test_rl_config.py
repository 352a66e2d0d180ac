"""IQL settings: documented once, overridable by NAME=VALUE with errors naming the setting."""

from __future__ import annotations

from dataclasses import fields

import pytest

from rgvlm_core.errors import UsageError
from rgvlm_core.rl.config import IQL_HELP, IQLConfig, with_overrides


def test_every_setting_has_a_help_text() -> None:
    assert set(IQL_HELP) == {f.name for f in fields(IQLConfig)}
    assert all(text.endswith(".") and len(text) > 10 for text in IQL_HELP.values())


def test_overrides_are_parsed_as_the_settings_type() -> None:
    config = with_overrides(IQLConfig(), ["beta=3", "expectile=0.7", "hidden=64", "layer-norm=false"])
    assert (config.beta, config.expectile, config.hidden, config.layer_norm) == (3.0, 0.7, 64, False)
    assert isinstance(config.hidden, int) and isinstance(config.beta, float)


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        ("betta=3", "NAME one of"),
        ("beta", "NAME=VALUE"),
        ("hidden=wide", "hidden takes an integer, got 'wide'"),
        ("layer_norm=maybe", "layer_norm takes true or false"),
        ("expectile=1.5", "IQLConfig.expectile=1.5: must be strictly between 0 and 1"),
    ],
)
def test_a_bad_override_names_the_setting(pair: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        with_overrides(IQLConfig(), [pair])


def test_the_app_can_read_the_settings_without_torch() -> None:
    import subprocess
    import sys

    code = "import sys, rgvlm_core.rl.config; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
