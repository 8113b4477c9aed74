"""Serve a jina-shaped ONNX model folder with infinity-emb, as a benchmark competitor.

infinity's ``optimum`` engine feeds only the tokenizer's outputs (``input_ids``,
``attention_mask``) and reads ``last_hidden_state``, so ``bake_task`` writes a copy of the
folder whose graph has ``task_id`` as a constant and ``text_embeds`` renamed; infinity then
mean-pools and L2-normalises like the service. The weights file is hard-linked, not copied,
where the file system allows.

Install (optional, its own venv; the pins are in requirements-infinity.txt)::

    python -m venv .venv-infinity
    .venv-infinity/bin/pip install torch==2.13.0 -r requirements-infinity.txt

Then, with this project's venv::

    python -c "from pathlib import Path; from benchmarks.infinity_model import bake_task; \\
        bake_task(Path('models/minilm-sized'), Path('.run/minilm-infinity'))"
    DO_NOT_TRACK=1 .venv-infinity/bin/infinity_emb v2 --model-id .run/minilm-infinity \\
        --engine optimum --device cpu --pooling-method mean --port 7997 ...

(``infinity_command`` builds that argv.) Its route is ``POST /embeddings`` (OpenAI shape);
``/v1/embeddings`` exists only with ``--url-prefix /v1``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from encoder.model.card import ModelCard

ONNX_IN, ONNX_OUT = "task_id", "text_embeds"
INFINITY_OUT = "last_hidden_state"


def bake_task(model_dir: Path, out_dir: Path, task_id: int = 0) -> Path:
    """Write ``model_dir`` to ``out_dir`` with ``task_id`` fixed; return ``out_dir``.

    The copy has ``onnx/model.onnx`` (the only ``*.onnx`` file, as infinity takes any it
    finds) with the scalar input ``task_id`` turned into an int64 initializer and the output
    ``text_embeds`` renamed ``last_hidden_state``; its external weights keep their file
    name. The top-level files (config, tokenizer) are copied, with ``max_position_embeddings``
    in config.json set to the model's real token limit, since infinity truncates to it.
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper

    src = model_dir / "onnx" / "model.onnx"
    model = onnx.load(str(src), load_external_data=False)
    graph = model.graph
    inputs = [i for i in graph.input if i.name != ONNX_IN]
    if len(inputs) == len(graph.input):
        raise ValueError(f"{src} has no input {ONNX_IN!r}")
    del graph.input[:]
    graph.input.extend(inputs)
    graph.initializer.append(numpy_helper.from_array(np.array(task_id, np.int64), ONNX_IN))
    for node in graph.node:
        node.input[:] = [INFINITY_OUT if n == ONNX_OUT else n for n in node.input]
        node.output[:] = [INFINITY_OUT if n == ONNX_OUT else n for n in node.output]
    for output in graph.output:
        if output.name == ONNX_OUT:
            output.name = INFINITY_OUT

    if out_dir.resolve() == model_dir.resolve():
        raise ValueError("out_dir must differ from model_dir (it is replaced)")
    onnx_dir = out_dir / "onnx"
    if out_dir.exists():
        shutil.rmtree(out_dir)
    onnx_dir.mkdir(parents=True)
    onnx.save(model, str(onnx_dir / "model.onnx"))
    data_files = {t.external_data[i].value for t in graph.initializer
                  for i in range(len(t.external_data)) if t.external_data[i].key == "location"}
    for name in data_files:
        _link_or_copy(src.parent / name, onnx_dir / name)
    for path in model_dir.iterdir():
        if path.is_file():
            shutil.copyfile(path, out_dir / path.name)
    config_path = out_dir / "config.json"
    if config_path.is_file():
        config = json.loads(config_path.read_text(encoding="utf-8"))
        config["max_position_embeddings"] = ModelCard.from_folder(model_dir).max_tokens
        config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return out_dir


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst``, or copy it across file systems."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


# How infinity-emb is started: with its own defaults (its ONNX optimizer on), or as the
# earlier figures had it: ORT's graph optimizer turned off (``--onnx-disable-optimize``) and
# the torch engine's BetterTransformer and compile off (no effect on the optimum engine).
VARIANTS = {"defaults": [],
            "no-optimizer": ["--onnx-disable-optimize", "--no-bettertransformer", "--no-compile"]}


def infinity_command(venv_python_or_bin: Path, model_dir: Path, port: int,
                     variant: str = "defaults", batch_size: int = 32) -> list[str]:
    """argv that starts ``infinity_emb v2`` on ``model_dir`` (a ``bake_task`` folder).

    ``venv_python_or_bin``: the venv's python, its ``bin`` folder or its ``infinity_emb``.
    Serves on 127.0.0.1:``port`` with the ONNX engine on CPU, mean pooling, its batch size
    (32, infinity's default), no result cache (it would answer repeated inputs without the
    model) and the flags of ``variant`` (``VARIANTS``). Run it with ``DO_NOT_TRACK=1`` in
    the environment (no telemetry calls).
    """
    path = Path(venv_python_or_bin)
    if path.is_dir():
        path = path / "infinity_emb"
    head = [str(path), "-m", "infinity_emb.cli"] if path.name.startswith("python") else [
        str(path)]
    return [*head, "v2", "--model-id", str(model_dir), "--served-model-name", model_dir.name,
            "--engine", "optimum", "--device", "cpu", "--pooling-method", "mean",
            "--batch-size", str(batch_size), "--host", "127.0.0.1", "--port", str(port),
            "--no-vector-disk-cache", *VARIANTS[variant], "--log-level", "warning"]
