import json

from encoder.model.card import ModelCard
from tests.models import INSTRUCTIONS, JINA_TINY_DIMS, TASKS


def test_jina_card_reads_tasks_prefixes_dims_and_8192_limit(jina_dir):
    card = ModelCard.from_folder(jina_dir)
    assert card.tasks == tuple(TASKS)
    assert card.task_id("text-matching") == 4
    assert card.instruction("retrieval.query") == INSTRUCTIONS["retrieval.query"]
    assert card.instruction("classification") == ""
    assert card.matryoshka_dims == tuple(JINA_TINY_DIMS)
    # 8194 positions numbered from pad_token_id + 1 = 2 hold 8192 tokens.
    assert card.max_tokens == 8192
    assert card.pad_token_id == 1
    assert card.pooling == "mean"


def test_plain_bert_card_has_no_tasks(minilm_dir):
    card = ModelCard.from_folder(minilm_dir)
    assert card.tasks == ()
    assert card.instruction(None) == ""
    assert card.max_tokens == 512
    assert card.hidden_size == 384


def test_limits_take_the_smaller_of_positions_and_tokenizer(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(
        {"model_type": "bert", "max_position_embeddings": 512, "pad_token_id": 0}))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 256}))
    assert ModelCard.from_folder(tmp_path).max_tokens == 256
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"model_max_length": 1000000000000000019884624838656}))
    assert ModelCard.from_folder(tmp_path).max_tokens == 512


def test_rotary_positions_are_all_usable(tmp_path):
    """jina-v3's rotary caches have max_position_embeddings rows, from position 0: its real
    graph runs 8194 tokens and fails at 8195 (docs/decisions/long-documents.md)."""
    config = {"model_type": "xlm-roberta", "max_position_embeddings": 8194, "pad_token_id": 1,
              "position_embedding_type": "rotary", "num_hidden_layers": 24,
              "intermediate_size": 4096}
    (tmp_path / "config.json").write_text(json.dumps(config))
    card = ModelCard.from_folder(tmp_path)
    assert card.max_tokens == 8194 and card.layers == 24 and card.intermediate_size == 4096
    (tmp_path / "config.json").write_text(json.dumps({**config, "position_embedding_type":
                                                      "absolute"}))
    assert ModelCard.from_folder(tmp_path).max_tokens == 8192


def test_cls_pooling_from_sentence_transformers_config(tmp_path):
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling/config.json").write_text(json.dumps(
        {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}))
    assert ModelCard.from_folder(tmp_path).pooling == "cls"
