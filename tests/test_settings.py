import pytest
from pydantic import ValidationError

from encoder.settings import ServiceSettings


def test_defaults_validate_and_window_holds_runs():
    settings = ServiceSettings()
    assert settings.sort_window_tokens >= settings.max_batch_tokens


def test_sort_window_below_run_budget_is_refused():
    with pytest.raises(ValidationError, match="sort_window_tokens"):
        ServiceSettings(max_batch_tokens=1024, sort_window_tokens=512)
    assert ServiceSettings(max_batch_tokens=512, sort_window_tokens=512).sort_window_tokens == 512


def test_unknown_option_is_refused():
    with pytest.raises(ValidationError):
        ServiceSettings(max_batch_token=512)
