import pytest

from encoder.errors import EmbeddingError
from encoder.ingress.schemas import parse_embedding_request
from tests.bad_inputs import BAD_REQUESTS

# Cases that are well-formed JSON of the right shape and fail later, on limits or the model.
_CHECKED_LATER = {
    "input-empty-string", "input-empty-list", "input-list-with-empty-string",
    "input-nested-empty", "too-many-inputs", "token-id-negative", "token-id-out-of-vocab",
    "token-id-huge", "too-long", "too-long-ids", "unknown-task", "dimensions-over-width",
    "max-length-below-specials", "lone-surrogate", "lone-surrogate-in-list", "dimensions-huge",
    "task-empty", "late-chunking-ids", "late-chunking-empty-chunk",
    "late-chunking-over-request-cap",
}
_SCHEMA_CASES = [c for c in BAD_REQUESTS if c.name not in _CHECKED_LATER and c.status == 400]


@pytest.mark.parametrize("case", _SCHEMA_CASES, ids=[c.name for c in _SCHEMA_CASES])
def test_schema_rejects(case):
    with pytest.raises(EmbeddingError) as info:
        parse_embedding_request(case.body)
    assert info.value.status == case.status
    assert info.value.param == case.param


def test_openai_and_jina_fields_parse():
    request = parse_embedding_request(
        b'{"input": ["a", "b"], "model": "text-embedding-3-small", "encoding_format": "base64",'
        b' "dimensions": 32, "user": "u1", "task": "retrieval.query", "normalized": false,'
        b' "truncate": true, "max_length": 512}')
    assert request.input == ["a", "b"] and request.dimensions == 32
    assert request.task == "retrieval.query" and request.normalized is False
    assert request.truncate is True and request.max_length == 512
    defaults = parse_embedding_request(b'{"input": [[0, 5, 2], [0, 2]]}')
    assert defaults.input == [[0, 5, 2], [0, 2]]
    assert defaults.encoding_format == "float" and defaults.normalized is True
    assert defaults.truncate is None
