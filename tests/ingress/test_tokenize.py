import asyncio
import time

import pytest
from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerFast

from encoder.errors import EmbeddingError
from encoder.ingress.tokenize import TextTokenizer


@pytest.fixture(scope="module")
def xlmr(jina_dir):
    return TextTokenizer(jina_dir)


def test_xlmr_ids_and_special_tokens(xlmr):
    ids = xlmr.encode(["Hello world", "你好，世界"], limit=8192, truncate=False)
    assert ids[0][0] == 0 and ids[0][-1] == 2  # <s> ... </s>
    assert ids[0] == [0, 35378, 8999, 2]
    assert ids[1][0] == 0 and ids[1][-1] == 2 and len(ids[1]) > 2
    assert xlmr.vocab_size == 250002
    assert xlmr.special_tokens == 2


@pytest.mark.parametrize("text", ["tail ", "a  b   c", " lead", "generation \n", "\u3000全角"])
def test_matches_tokenizer_json_exactly(xlmr, jina_dir, text):
    """transformers 5's AutoTokenizer drops jina's trailing "▁"; the file's pipeline keeps it."""
    expected = Tokenizer.from_file(str(jina_dir / "tokenizer.json")).encode(text).ids
    assert xlmr.encode([text], 8192, False) == [expected]


def test_over_limit_is_a_400_naming_index_and_count(xlmr):
    with pytest.raises(EmbeddingError) as info:
        xlmr.encode(["short", "word " * 50], limit=20, truncate=False)
    error = info.value
    assert error.status == 400 and error.param == "input"
    assert "input[1]" in error.message and "53 tokens" in error.message
    assert error.code == "context_length_exceeded"


@pytest.fixture(scope="module")
def hf_xlmr(jina_dir):
    return PreTrainedTokenizerFast(tokenizer_file=str(jina_dir / "tokenizer.json"))


@pytest.mark.parametrize("limit", [3, 5, 20, 49, 50, 51])
def test_truncation_matches_transformers(xlmr, hf_xlmr, limit):
    text = "The quick brown fox jumps over the lazy dog " * 5 + "end "
    expected = hf_xlmr(text, truncation=True, max_length=limit)["input_ids"]
    assert xlmr.encode([text], limit=limit, truncate=True) == [expected]


def test_check_ids_bounds(xlmr):
    assert xlmr.check_ids([[0, 5, 2]], limit=10, truncate=False) == [[0, 5, 2]]
    assert xlmr.check_ids([[0, 5, 6, 7, 2]], limit=3, truncate=True) == [[0, 5, 6]]
    for bad in ([[-1]], [[250002]], [[]], [[0] * 11]):
        with pytest.raises(EmbeddingError) as info:
            xlmr.check_ids(bad, limit=10, truncate=False)
        assert info.value.status == 400 and info.value.param == "input"


def test_lone_surrogate_is_a_400(xlmr):
    with pytest.raises(EmbeddingError, match=r"input\[1\].*surrogate"):
        xlmr.encode(["fine", "bad \ud800"], limit=100, truncate=False)


def test_bert_tokenizer_lowercases(minilm_dir):
    bert = TextTokenizer(minilm_dir)
    # MiniLM's tokenizer.json pads to 128 on its own; padding is the encoder's job.
    assert bert.encode(["hi"], 512, False) == [[101, 7632, 102]]
    assert bert.encode(["HELLO"], 512, False) == bert.encode(["hello"], 512, False)


_FLOOR_TEXTS = [
    "Hello world", "a  b   c", "你好，世界 今天", "\u200b \u200b x", "\x01 \x02 \x03", "   ",
    "e\u0301 combining", "\u3000全角 ｆｕｌｌ", "tabs\tand\nnewlines", "😀 " * 40, "word " * 500,
]


@pytest.mark.parametrize("text", _FLOOR_TEXTS)
def test_min_tokens_never_exceeds_the_real_count(xlmr, minilm_dir, text):
    bert = TextTokenizer(minilm_dir)
    for tokenizer in (xlmr, bert):
        real = len(tokenizer.encode([text], 10**6, False)[0]) - tokenizer.special_tokens
        assert 0 <= tokenizer.min_tokens([text]) <= real


def test_min_tokens_is_close_for_plain_words(xlmr):
    assert xlmr.min_tokens(["word " * 1000]) == 1000
    assert xlmr.min_tokens(["one two", "three"]) == xlmr.min_tokens(["one two three"]) == 3


def test_tokenizing_a_big_document_leaves_other_threads_running(xlmr):
    """The ingress tokenizes big inputs in a thread; its event loop must keep serving."""
    document = "word " * 360_000

    async def worst_stall_share(work) -> float:
        began = time.perf_counter()
        worst, task = 0.0, asyncio.create_task(asyncio.to_thread(work))
        while not task.done():
            start = time.perf_counter()
            await asyncio.sleep(0.001)
            worst = max(worst, time.perf_counter() - start)
        await task
        return worst / (time.perf_counter() - began)

    # Relative to the work's own time, so a slow machine does not decide it: holding the
    # GIL throughout stalls the loop for ~80% of it, releasing it for 5-20%.
    for work in (lambda: xlmr.content_with_offsets(document),
                 lambda: xlmr.encode([document], 8192, True)):
        assert asyncio.run(worst_stall_share(work)) < 0.4
