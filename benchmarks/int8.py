"""int8 study: which dynamic-quantization recipe is fastest and closest to fp32 on this CPU.

Variants of one model folder (built in a scratch folder) join parts with "+"; "fp32" (the
source) is always measured. Parts: ``shipped`` (the copy the service serves, built by
``encoder/model/quantize.py`` beside the model for this CPU; ``reduce-range`` joins it for
the copy a CPU without VNNI gets, ``x64quantprecision`` too),
``optimized`` (ORT's transformers optimizer, bert, CPU: Attention, LayerNorm, Gelu fusions;
needs sympy and torch, so ``--optimizer-python`` runs it), ``per-tensor`` (quantize_dynamic
QInt8), ``per-channel``, ``reduce-range`` (7-bit weights), ``u8-weights`` (QUInt8),
``matmul-only`` (Gather left fp32), ``ffn-out-fp32`` (the FFN's down projections, weights
``[intermediate_size, hidden_size]``, left fp32; ``early-ffn-out-fp32``: the first half of
the layers' only), ``x64quantprecision`` (session config kOrtSessionOptionsAvx2PrecisionMode:
U8U8 kernels, ORT's guard against U8S8 saturation without VNNI), ``nbits8`` (a scheme of its
own: MatMulNBits, 8-bit weights in blocks of 128 with activations quantized per block at run
time, accuracy_level 4; needs onnx-ir, requirements-bench.txt). Speed: ``OnnxModel`` (the
encoder's options), length-sorted short queries in batches of 16, long passages in 4s,
interleaved over ``--rounds``, median texts/s. Accuracy: cosine of pooled, normalised vectors
to fp32's on real sentences (``tests/corpus.py``). ``--fidelity``: accuracy only, no timing,
in length-sorted batches of each size given; writes results/int8-fidelity-<model>.csv.

Usage: python -m benchmarks.int8 --model models/minilm-sized [--rounds 3] [--texts 256]
       [--variants fp32 per-tensor ...] [--keep DIR] [--reopen] [--fidelity [BATCH ...]]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path

import onnx
import onnxruntime as ort
from onnxruntime.quantization import QuantType, quantize_dynamic

from benchmarks.int8_fidelity import batched, fidelity, opened, pooled
from benchmarks.plots import write_csv
from benchmarks.throughput import RESULTS
from benchmarks.workloads import long_passages, short_queries
from encoder.ingress.tokenize import TextTokenizer
from encoder.model.card import ModelCard
from encoder.model.prepare import source_digest
from encoder.model.quantize import cpu_flags_of_host, quantized_model
from encoder.model.runtime import OnnxModel, served_onnx
from tests.corpus import SENTENCES

PARTS = {"optimized", "per-tensor", "per-channel", "reduce-range", "x64quantprecision",
         "matmul-only", "ffn-out-fp32", "early-ffn-out-fp32", "u8-weights", "nbits8", "shipped"}
SCHEMES = ("per-tensor", "per-channel", "nbits8", "shipped")
VARIANTS = ("fp32 optimized per-tensor per-channel optimized+per-tensor optimized+per-channel "
            "per-channel+reduce-range optimized+per-channel+reduce-range "
            "per-tensor+x64quantprecision optimized+per-channel+x64quantprecision").split()
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
BATCH = {"short": 16, "long": 4}
SEVEN_BIT = {"avx2"}  # CPU flags for which the service builds its 7-bit copy (no VNNI)
OPTIMIZE = """import json, sys
from onnxruntime.transformers.optimizer import optimize_model
source, target, heads, width, level = sys.argv[1:]
m = optimize_model(source, "bert", int(heads), int(width), opt_level=int(level), use_gpu=False)
m.save_model_to_file(target, use_external_data_format=True)
print(json.dumps({k: v for k, v in m.get_fused_operator_statistics().items() if v}))"""


def parse_variant(name: str) -> frozenset[str]:
    """The parts of variant ``name``, checked: one scheme at most, which the others need."""
    parts = frozenset() if name == "fp32" else frozenset(name.split("+"))
    quantized = len(parts & set(SCHEMES))
    if (parts - PARTS or quantized > 1 or (parts - {"optimized", *SCHEMES} and not quantized)
            or ("shipped" in parts and parts - {"shipped", "x64quantprecision", "reduce-range"})):
        raise SystemExit(f"bad variant {name!r}: parts are {sorted(PARTS)}")
    return parts


def external_files(path: Path) -> list[Path]:
    """The external data files ``path``'s initializers name."""
    graph = onnx.load(str(path), load_external_data=False).graph
    return [path.parent / n for n in {e.value for t in graph.initializer for e in t.external_data
                                      if e.key == "location"}]


def staged(source: Path, scratch: Path) -> Path:
    """``source``, or a copy in ``scratch`` if its external data has several hard links: onnx
    refuses to load those ("potential hardlink attack"), so quantize_dynamic would fail."""
    files, copy = external_files(source), scratch / "source"
    if all(f.stat().st_nlink == 1 for f in files):
        return source
    print(f"{source}: external data has several hard links; working on a copy")
    copy.mkdir(parents=True, exist_ok=True)
    for f in (f for f in [source, *files] if not (copy / f.name).is_file()):
        shutil.copyfile(f, copy / f.name)
    return copy / source.name


def optimize(source: Path, target: Path, config: dict, level: int, python: str) -> dict | str:
    """Fused operator counts of the optimized copy written to ``target``, or why it failed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    stats = target.with_name("fusions.json")
    if not (target.is_file() and stats.is_file()):
        done = subprocess.run([python, "-c", OPTIMIZE, str(source), str(target),
                               str(config["num_attention_heads"]), str(config["hidden_size"]),
                               str(level)], capture_output=True, text=True)
        if done.returncode or not target.is_file():
            return (done.stderr.strip().splitlines() or ["no output"])[-1]
        stats.write_text(done.stdout.strip().splitlines()[-1])
    return json.loads(stats.read_text())


def quantize(source: Path, target: Path, per_channel: bool, reduce_range: bool,
             matmul_only: bool = False, exclude: list[str] | None = None,
             weight_type: QuantType = QuantType.QInt8) -> None:
    """``encoder/model/quantize.py``'s quantize_dynamic call, with the study's switches
    (``matmul_only``: leave Gather, the embedding lookup, in fp32; ``exclude``: nodes)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    logging.disable(logging.WARNING)  # one "failed to infer data type" line per tensor of jina's
    quantize_dynamic(source, target, weight_type=weight_type, per_channel=per_channel,
                     reduce_range=reduce_range, use_external_data_format=True,
                     op_types_to_quantize=["MatMul"] if matmul_only else None,
                     nodes_to_exclude=exclude,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    logging.disable(logging.NOTSET)


def ffn_down_projections(source: Path, config: dict, early: bool = False) -> list[str]:
    """MatMul nodes whose weight is ``[intermediate_size, hidden_size]``: the FFN's second
    product, whose input (after GELU) has the widest range to quantize (``early``: only
    those of the first half of the layers, where MiniLM's error comes from)."""
    graph = onnx.load(str(source), load_external_data=False).graph
    shape = [config["intermediate_size"], config["hidden_size"]]
    down = {t.name for t in graph.initializer if list(t.dims) == shape}
    nodes = [n.name for n in graph.node if n.op_type == "MatMul" and set(n.input) & down]
    if not all(nodes):  # quantize_dynamic excludes by name: "" would exclude every unnamed node
        raise SystemExit(f"{source}: unnamed MatMul nodes; ffn-out-fp32 cannot pick them")
    return nodes[: len(nodes) // 2] if early else nodes


def quantize_nbits8(source: Path, target: Path) -> None:
    """MatMulNBits: 8-bit weights in blocks of 128, activations quantized per block at run
    time (accuracy_level 4, int8 compute)."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    quantizer = MatMulNBitsQuantizer(onnx.load(str(source)), bits=8, block_size=128,
                                     accuracy_level=4)
    quantizer.process()
    target.parent.mkdir(parents=True, exist_ok=True)
    quantizer.model.save_model_to_file(str(target), use_external_data_format=True)


def build(args: argparse.Namespace, parts: dict[str, frozenset[str]], scratch: Path,
          ) -> dict[str, Path]:
    """Each variant's ONNX file, built if missing (none for optimized ones if that failed)."""
    # The prepared copy, what the service quantizes (a plain export is its own).
    card = ModelCard.from_folder(args.model)
    sources = {False: served_onnx(args.model / "onnx/model.onnx", card)}
    # Built files are kept per source (its bytes' digest) and optimizer level, so --keep
    # never measures another model's, or another level's, copy.
    scratch = scratch / source_digest(sources[False])[:16]
    level = f"-L{args.opt_level}"
    if any("optimized" in p for p in parts.values()):
        started, target = time.perf_counter(), scratch / f"optimized{level}/model.onnx"
        fused = optimize(staged(sources[False], scratch), target, json.loads(
            (args.model / "config.json").read_text()), args.opt_level, args.optimizer_python)
        if isinstance(fused, dict):
            sources[True] = target
        print(f"optimizer (opt_level {args.opt_level}, {time.perf_counter() - started:.0f} s) "
              + (f"fused: {fused or 'nothing'}" if isinstance(fused, dict)
                 else f"failed, optimized variants dropped: {fused}"))
    paths = {}
    for name, p in ((n, p) for n, p in parts.items() if ("optimized" in p) in sources):
        paths[name] = source = sources["optimized" in p]
        if "shipped" in p:  # the service's own copy: its recipe, its cache
            paths[name] = quantized_model(sources[False], card, SEVEN_BIT if "reduce-range" in p
                                          else None)
            continue
        if scheme := next((s for s in SCHEMES if s in p), None):
            tag = (f"optimized{level}-" * ("optimized" in p) + scheme
                   + "-rr" * ("reduce-range" in p)
                   + "-mm" * ("matmul-only" in p) + "-ffn" * ("ffn-out-fp32" in p)
                   + "-effn" * ("early-ffn-out-fp32" in p) + "-u8" * ("u8-weights" in p))
            paths[name], started = scratch / tag / "model.onnx", time.perf_counter()
            if paths[name].is_file():
                continue
            if scheme == "nbits8":
                quantize_nbits8(staged(source, scratch), paths[name])
            else:
                config = json.loads((args.model / "config.json").read_text())
                exclude = (ffn_down_projections(source, config, "early-ffn-out-fp32" in p)
                           if p & {"ffn-out-fp32", "early-ffn-out-fp32"} else None)
                quantize(staged(source, scratch), paths[name], scheme == "per-channel",
                         "reduce-range" in p, "matmul-only" in p, exclude,
                         QuantType.QUInt8 if "u8-weights" in p else QuantType.QInt8)
            print(f"built {tag} in {time.perf_counter() - started:.0f} s", flush=True)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="model folder")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--texts", type=int, default=256, help="short queries (long: 1/8)")
    parser.add_argument("--variants", nargs="+", default=VARIANTS)
    parser.add_argument("--keep", type=Path, help="build into (and reuse) DIR, not a tempdir; "
                        "copies are kept per model digest and optimizer level")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--opt-level", type=int, choices=(0, 1), default=1)
    parser.add_argument("--optimizer-python", default=sys.executable if find_spec("sympy")
                        and find_spec("torch") else ".venv-infinity/bin/python")
    parser.add_argument("--reopen", action="store_true", help="one session open at a time")
    parser.add_argument("--fidelity", type=int, nargs="*", metavar="BATCH",
                        help="cosines only, no timing, in batches of these sizes (none: 1 16)")
    args = parser.parse_args()
    flags = cpu_flags_of_host()
    print(f"onnxruntime {ort.__version__}; CPU: "
          + ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in CPU_FLAGS))
    parts = {n: parse_variant(n) for n in dict.fromkeys(["fp32", *args.variants])}
    with tempfile.TemporaryDirectory(prefix="int8-") as tmp:
        paths = build(args, parts, args.keep or Path(tmp))
        if args.fidelity is None:
            measure(args, paths)
        else:
            fidelity(args, paths, args.fidelity or [1, 16])


def measure(args: argparse.Namespace, paths: dict[str, Path]) -> None:
    """Time the variants interleaved, compare their vectors to fp32's, print the table."""
    card, tokenizer = ModelCard.from_folder(args.model), TextTokenizer(args.model)
    texts = {"short": short_queries(args.texts), "long": long_passages(max(4, args.texts // 8))}
    batches = {w: batched(tokenizer, card, chunk, BATCH[w]) for w, chunk in texts.items()}
    sentences = batched(tokenizer, card, SENTENCES, 8)
    sessions, vectors, rates = {}, {}, {}  # by name; by name; by (name, workload)

    def session_of(name: str) -> OnnxModel:
        if name not in sessions:
            model = sessions[name] = opened(paths[name], args.threads, name)
            task = 0 if model.has_task_id else None
            for workload in batches:  # warm-up: ORT plans and allocates on first runs
                model.token_states(*batches[workload][-1], task)
            if name not in vectors:
                vectors[name] = pooled(model, card, sentences)
        return sessions[name]

    names = list(paths)
    for round_ in range(args.rounds):  # interleaved, the order rotated each round
        for name in names[round_ % len(names):] + names[: round_ % len(names)]:
            model = session_of(name)
            for workload, chunk in batches.items():
                started = time.perf_counter()
                for ids, mask in chunk:
                    model.token_states(ids, mask, 0 if model.has_task_id else None)
                rates.setdefault((name, workload), []).append(
                    len(texts[workload]) / (time.perf_counter() - started))
            if args.reopen:
                del sessions[name]
        print(f"round {round_ + 1}/{args.rounds} done", flush=True)

    rate = {key: statistics.median(values) for key, values in rates.items()}
    print(f"\n{args.model.name}, {args.threads} threads, median of {args.rounds} round(s): "
          f"{len(texts['short'])} short / 16, {len(texts['long'])} long / 4 per batch; "
          f"cosine to fp32 on {len(SENTENCES)} sentences")
    print(f"{'variant':<40} {'MB':>6} {'short/s':>8} {'x':>5} {'long/s':>8} {'x':>5} "
          f"{'cos mean':>9} {'cos min':>9}")
    rows = []
    for name in names:
        cosine = (vectors[name] * vectors["fp32"]).sum(axis=1)
        mb = sum(f.stat().st_size for f in [paths[name], *external_files(paths[name])]) / 1e6
        cells = " ".join(f"{rate[name, w]:8.1f} {rate[name, w] / rate['fp32', w]:5.2f}"
                         for w in ("short", "long"))
        print(f"{name:<40} {mb:6.0f} {cells} {cosine.mean():9.5f} {cosine.min():9.5f}")
        rows.append({"variant": name, "mb": round(mb), "threads": args.threads,
                     **{f"{w}_per_s": round(rate[name, w], 1) for w in ("short", "long")},
                     **{f"{w}_x_fp32": round(rate[name, w] / rate["fp32", w], 2)
                        for w in ("short", "long")},
                     "cos_mean": round(float(cosine.mean()), 5),
                     "cos_min": round(float(cosine.min()), 5)})
    print(write_csv(rows, RESULTS / f"int8-{args.model.name}.csv"))


if __name__ == "__main__":
    main()
