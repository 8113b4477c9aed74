"""What the shared Serve instances of tests/e2e/conftest.py are configured with, for the
tests that talk to them."""

API_KEY = "test-key"
# Small admission limits, so a 40-request burst is ten times what the service admits.
LIMITS = {"max_inflight_requests": 4, "max_inflight_tokens": 8192}
# The guarded instance's batches.completion_window_s.
BATCH_WINDOW_S = 2
