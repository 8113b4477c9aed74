import logging

import pytest
from pydantic import ValidationError

from encoder.settings import SchedulerSettings, ServiceSettings


def test_defaults_validate_and_window_holds_runs():
    scheduler = ServiceSettings().scheduler
    assert scheduler.sort_window_tokens >= scheduler.max_run_tokens


def test_sort_window_below_run_budget_is_refused():
    with pytest.raises(ValidationError, match="sort_window_tokens"):
        ServiceSettings(scheduler={"max_run_tokens": 1024, "sort_window_tokens": 512})
    assert SchedulerSettings(max_run_tokens=512, sort_window_tokens=512).sort_window_tokens == 512


def test_unknown_option_is_refused_at_either_level():
    with pytest.raises(ValidationError):
        ServiceSettings(max_run_tokens=512)  # a scheduler option belongs under scheduler
    with pytest.raises(ValidationError):
        ServiceSettings(scheduler={"max_run_token": 512})


def test_a_yaml_with_the_old_names_still_loads_and_says_so(caplog):
    with caplog.at_level(logging.WARNING, logger="encoder.settings"):
        settings = ServiceSettings(batching={"max_batch_tokens": 256, "sort_window_tokens": 1024,
                                             "batch_wait_timeout_s": 0.01})
    assert settings.scheduler == SchedulerSettings(max_run_tokens=256, sort_window_tokens=1024,
                                                   call_wait_s=0.01)
    said = caplog.text
    assert "batching is deprecated; use scheduler" in said
    assert "scheduler.max_batch_tokens is deprecated; use scheduler.max_run_tokens" in said
    with pytest.raises(ValidationError, match="deprecated name"):
        ServiceSettings(batching={}, scheduler={})


def test_the_input_token_limit_is_the_models_unless_capped_below():
    assert ServiceSettings().input_token_limit(8194) == 8194
    assert ServiceSettings(max_tokens=512).input_token_limit(8194) == 512
    assert ServiceSettings(max_tokens=9000).input_token_limit(8194) == 8194
