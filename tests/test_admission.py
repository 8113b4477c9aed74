import pytest

from encoder.admission import AdmissionControl, estimate_tokens
from encoder.errors import EmbeddingError


def test_admits_within_budget_and_releases():
    control = AdmissionControl(max_tokens=100, max_requests=10)
    with control.admit(60) as first:
        first.hold(60)
        assert control.tokens == 60 and control.requests == 1
        with control.admit(40) as second:
            second.hold(40)
            assert control.tokens == 100
    assert control.tokens == 0 and control.requests == 0


def test_an_estimate_over_budget_is_429_with_retry_after():
    control = AdmissionControl(max_tokens=100, max_requests=10)
    with control.admit(60) as first, pytest.raises(EmbeddingError) as info:
        first.hold(60)
        with control.admit(41):
            pass
    error = info.value
    assert error.status == 429 and error.code == "overloaded"
    assert int(error.headers()["Retry-After"]) >= 1
    assert control.tokens == 0 and control.requests == 0


def test_the_estimate_holds_nothing_and_the_exact_count_decides():
    control = AdmissionControl(max_tokens=100, max_requests=10)
    with control.admit(90) as big:  # admitted on its estimate, not yet tokenized
        assert control.tokens == 0
        with control.admit(50) as other:  # so a request beside it still fits
            other.hold(50)
            with pytest.raises(EmbeddingError):
                big.hold(90)  # exact: 90 + 50 > 100 beside another request
        assert control.tokens == 0


def test_request_count_limit_and_lone_big_request():
    control = AdmissionControl(max_tokens=10, max_requests=1)
    # Nothing in flight: a request over the budget is still admitted, the next one is not.
    with control.admit(10_000) as lone, pytest.raises(EmbeddingError):
        lone.hold(10_000)
        with control.admit(1):
            pass


def test_budget_released_when_the_work_fails():
    control = AdmissionControl(max_tokens=10, max_requests=2)
    with pytest.raises(RuntimeError), control.admit(5) as ticket:
        ticket.hold(5)
        raise RuntimeError("encoder died")
    assert control.tokens == 0 and control.requests == 0


def test_estimate_from_body_size():
    assert estimate_tokens(0) == 1 and estimate_tokens(4000) == 1000
