import pytest
from pydantic import ValidationError

from encoder.settings import BatchingSettings, ServiceSettings


def test_defaults_validate_and_window_holds_runs():
    batching = ServiceSettings().batching
    assert batching.sort_window_tokens >= batching.max_batch_tokens


def test_sort_window_below_run_budget_is_refused():
    with pytest.raises(ValidationError, match="sort_window_tokens"):
        ServiceSettings(batching={"max_batch_tokens": 1024, "sort_window_tokens": 512})
    assert BatchingSettings(max_batch_tokens=512, sort_window_tokens=512).sort_window_tokens == 512


def test_unknown_option_is_refused_at_either_level():
    with pytest.raises(ValidationError):
        ServiceSettings(max_batch_tokens=512)  # a batching option belongs under batching
    with pytest.raises(ValidationError):
        ServiceSettings(batching={"max_batch_token": 512})
