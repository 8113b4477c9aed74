import pytest

from encoder.admission import AdmissionControl
from encoder.errors import APIError


def test_admits_within_budget_and_releases():
    control = AdmissionControl(max_tokens=100, max_requests=10)
    with control.admit(60):
        assert control.tokens == 60 and control.requests == 1
        with control.admit(40):
            assert control.tokens == 100
    assert control.tokens == 0 and control.requests == 0


def test_over_budget_is_429_with_retry_after():
    control = AdmissionControl(max_tokens=100, max_requests=10)
    with control.admit(60), pytest.raises(APIError) as info, control.admit(41):
        pass
    error = info.value
    assert error.status == 429 and error.code == "overloaded"
    assert int(error.headers["Retry-After"]) >= 1
    assert control.tokens == 0  # the refused request held nothing


def test_request_count_limit_and_lone_big_request():
    control = AdmissionControl(max_tokens=10, max_requests=1)
    # Nothing in flight: a request over the budget is still admitted, the next one is not.
    with control.admit(10_000), pytest.raises(APIError), control.admit(1):
        pass


def test_budget_released_when_the_work_fails():
    control = AdmissionControl(max_tokens=10, max_requests=2)
    with pytest.raises(RuntimeError), control.admit(5):
        raise RuntimeError("encoder died")
    assert control.tokens == 0 and control.requests == 0
