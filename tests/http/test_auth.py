import pytest

from encoder.errors import EmbeddingError
from encoder.http.auth import API_KEY_ENV, check_bearer, load_api_key


def test_env_wins_over_file(tmp_path, monkeypatch):
    key_file = tmp_path / "key"
    key_file.write_text("from-file\n")
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    assert load_api_key(None) is None
    assert load_api_key(str(key_file)) == "from-file"
    monkeypatch.setenv(API_KEY_ENV, "from-env")
    assert load_api_key(str(key_file)) == "from-env"


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer wrong", "Basic s3cret",
                                    "s3cret", "Bearer s3cret2"])
def test_rejects(header):
    with pytest.raises(EmbeddingError) as info:
        check_bearer(header, "s3cret")
    assert info.value.status == 401 and info.value.code == "invalid_api_key"
    assert info.value.headers()["WWW-Authenticate"] == "Bearer"


def test_accepts():
    check_bearer("Bearer s3cret", "s3cret")
    check_bearer("bearer s3cret", "s3cret")
