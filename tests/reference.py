"""An independent per-text fp32 reference of what the model should give.

Written from the model card, not from the service's code: prefix -> tokenize (one text, no
padding) -> ONNX -> attention-mask mean -> L2 normalise -> truncate -> renormalise. The
service must match it however it groups inputs into runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer


def open_model(folder: Path) -> tuple[dict, Tokenizer, ort.InferenceSession, set[str]]:
    """The model's config, its tokenizer for one sequence at a time (no padding: MiniLM's file
    pads to 128; no silent truncation), an ORT session of its export, its input names."""
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    session = ort.InferenceSession(str(folder / "onnx/model.onnx"),
                                   providers=["CPUExecutionProvider"])
    return (json.loads((folder / "config.json").read_text()), tokenizer, session,
            {i.name for i in session.get_inputs()})


class ReferenceEncoder:
    """One text at a time, the way the official ``encode`` does it."""

    def __init__(self, folder: Path) -> None:
        self.config, self.tokenizer, self.session, self.input_names = open_model(folder)
        outputs = [o.name for o in self.session.get_outputs()]
        self.output = "text_embeds" if "text_embeds" in outputs else "last_hidden_state"
        self._states: dict[tuple, np.ndarray] = {}

    def ids(self, text: str, task: str | None = None) -> list[int]:
        prefix = (self.config.get("task_instructions") or {}).get(task, "") if task else ""
        return self.tokenizer.encode(prefix + text).ids

    def embed_ids(self, ids: list[int], task: str | None = None) -> np.ndarray:
        """Raw mean-pooled vector of one id sequence (no normalisation)."""
        return self.token_states(ids, task).mean(axis=0)

    def token_states(self, ids: list[int], task: str | None = None) -> np.ndarray:
        """``[seq, width]`` float64 token states of one id sequence (computed once: a run of
        jina-v3's export as published takes ~0.6 s)."""
        key = (tuple(ids), task)
        if key not in self._states:
            self._states[key] = self._run(ids, task)
        return self._states[key]

    def _run(self, ids: list[int], task: str | None) -> np.ndarray:
        feed = {
            "input_ids": np.array([ids], dtype=np.int64),
            "attention_mask": np.ones((1, len(ids)), dtype=np.int64),
        }
        if "token_type_ids" in self.input_names:
            feed["token_type_ids"] = np.zeros((1, len(ids)), dtype=np.int64)
        if "task_id" in self.input_names:
            tasks = self.config["lora_adaptations"]
            feed["task_id"] = np.array(tasks.index(task or "text-matching"), dtype=np.int64)
        return self.session.run([self.output], feed)[0][0].astype(np.float64)

    def embed(self, text: str, task: str | None = None, dimensions: int | None = None,
              normalized: bool = True) -> np.ndarray:
        return finish_reference(self.embed_ids(self.ids(text, task), task), dimensions,
                                normalized)


def late_chunk_reference(ref: ReferenceEncoder, chunks: list[str], task: str | None = None,
                         window: int = 8192, overlap: int = 0) -> list[np.ndarray]:
    """Late chunking done the slow, literal way: states per window, then per chunk means.

    A token belongs to a chunk when its characters overlap the chunk's; in overlapping
    windows a token takes the window where it has the most context (ties: the later one).
    """
    prefix = (ref.config.get("task_instructions") or {}).get(task, "") if task else ""
    document = prefix + " ".join(chunks)
    content = ref.tokenizer.encode(document, add_special_tokens=False)
    full = ref.tokenizer.encode(document).ids
    lead, tail = full[:1], full[-1:]
    n, capacity = len(content.ids), window - 2
    starts = [0]
    while starts[-1] + capacity < n:
        starts.append(starts[-1] + capacity - overlap)
    best = [(-1, None)] * n
    for start in starts:
        stop = min(start + capacity, n)
        states = ref.token_states(lead + content.ids[start:stop] + tail, task)[1:-1]
        for j in range(start, stop):
            left = j - start if start > 0 else n
            right = stop - 1 - j if stop < n else n
            if min(left, right) >= best[j][0]:
                best[j] = (min(left, right), states[j - start])
    vectors, cursor = [], len(prefix)
    for chunk in chunks:
        end = cursor + len(chunk)
        mine = [best[j][1] for j, (s, e) in enumerate(content.offsets) if s < end and e > cursor]
        vectors.append(np.mean(mine, axis=0))
        cursor = end + 1
    return vectors


def finish_reference(vector: np.ndarray, dimensions: int | None, normalized: bool) -> np.ndarray:
    """Normalise, truncate, renormalise: the official order of operations."""
    if normalized:
        vector = vector / np.linalg.norm(vector)
    if dimensions:
        vector = vector[:dimensions]
        if normalized:
            vector = vector / np.linalg.norm(vector)
    return vector


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


class RerankReference:
    """One pair at a time, as jina-reranker-v2's own ``rerank`` does it: the query cut to
    half the window, a long document's windows overlapping by 80 tokens (at most a quarter
    of a window, the last one ending at the document's end), each pair built by the
    tokenizer's own post-processor, its logit from the ONNX graph unpadded, a document's
    score its best window's, then a sigmoid."""

    def __init__(self, folder: Path) -> None:
        self.config, self.tokenizer, self.session, self.input_names = open_model(folder)
        limit = self.config["max_position_embeddings"]
        if self.config.get("model_type") in ("xlm-roberta", "roberta"):
            limit -= self.config["pad_token_id"] + 1
        self.window = limit

    def logit(self, ids: list[int], types: list[int]) -> float:
        feed = {"input_ids": np.array([ids], dtype=np.int64),
                "attention_mask": np.ones((1, len(ids)), dtype=np.int64)}
        if "token_type_ids" in self.input_names:
            feed["token_type_ids"] = np.array([types], dtype=np.int64)
        return float(self.session.run(None, feed)[0][0][0])

    def pairs(self, query: str, document: str) -> list[tuple[list[int], list[int]]]:
        """(ids, token types) of each window's pair."""
        def query_encoding():  # the query with its single-text specials fits half the window
            encoding = self.tokenizer.encode(query, add_special_tokens=False)
            encoding.truncate(self.window // 2 - self.tokenizer.num_special_tokens_to_add(False))
            return encoding

        document_length = len(self.tokenizer.encode(document, add_special_tokens=False).ids)
        empty = self.tokenizer.post_process(query_encoding(),
                                            self.tokenizer.encode("", add_special_tokens=False))
        capacity = self.window - len(empty.ids)
        overlap = min(80, capacity // 4)
        bounds, start = [], 0
        if document_length <= capacity:
            bounds = [(0, document_length)]
        while not bounds or bounds[-1][1] < document_length:
            end = start + capacity
            bounds.append((start, end) if end < document_length
                          else (document_length - capacity, document_length))
            start = end - overlap
        out = []
        for first, last in bounds:
            piece = self.tokenizer.encode(document, add_special_tokens=False)
            piece.truncate(last, direction="right")
            piece.truncate(last - first, direction="left")
            pair = self.tokenizer.post_process(query_encoding(), piece)
            out.append((pair.ids, pair.type_ids))
        return out

    def score(self, query: str, document: str, raw: bool = False) -> float:
        best = max(self.logit(ids, types) for ids, types in self.pairs(query, document))
        return best if raw else 1 / (1 + np.exp(-best))
