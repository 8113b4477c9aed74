"""``jina-embed``: embed whole files on Ray Data, with the service's own core.

Per input file: ``read_parquet``/``read_json``/``read_csv`` → ``map_batches`` on a pool of
encoder actors (``encoder.bulk.RowEncoder``, ``num_cpus`` as serve_config.yaml gives the
Encoder) → ``write_parquet``, streaming, so memory is bounded by the blocks in flight. Each
input's output is written under a hidden folder and moved to ``OUTPUT/<name>/`` when it is
complete, so a re-run skips inputs already done (resume after a crash loses no finished
file); the job's summary is also written to ``OUTPUT/_jina_embed_summary.json``. OpenAI
batch files (JSONL of ``custom_id``/``url``/``body`` lines) are validated as OpenAI does and
answered line by line (``encoder.bulk.LineAnswerer``) into ``OUTPUT/<name>.output.jsonl``
and ``<name>.errors.jsonl``.
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import PurePosixPath

import pyarrow.dataset as pads
import pyarrow.fs as pafs

from encoder.batches.lines import parse_batch_file
from encoder.settings import ServiceSettings
from jina_serve.bulk import ERROR, BulkOptions, LineAnswerer, RowEncoder

FORMATS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv"}
# Reading and writing files is light next to ONNX: their tasks must fit beside the encoder
# actors (Ray's default, 1 CPU each, would wait forever on a 2-core machine).
IO_TASKS = {"num_cpus": 0.1}
# Start the whole pool before the first read: light read tasks would otherwise take the CPUs
# an actor still waits for, and the job would run on fewer actors than it asked for.
ACTORS_READY_S = 600
SUMMARY = "_jina_embed_summary.json"
# In each finished output folder ("_" keeps parquet readers away).
DONE = "_SUCCESS"


def local_ray_cpus() -> int:
    """Logical CPUs for a local Ray of the job: the machine's plus one. Ray Data's file
    listing task always asks for a whole CPU, which encoder actors sized to the machine
    (1.8 of 2) would never leave it; listing is light, so one CPU of headroom is honest."""
    return (os.cpu_count() or 1) + 1


@dataclass(frozen=True)
class JobPlan:
    """What to run: the model, the output options and the pool's shape."""

    settings: ServiceSettings
    options: BulkOptions
    output: str
    actor_cpus: float
    actors: int
    batch_size: int = 256
    mode: str = "auto"  # auto | table | openai-batch


def list_inputs(uri: str) -> tuple[pafs.FileSystem, list[str]]:
    """The filesystem and the input files a path, folder, glob or URI names, sorted.

    In a URI, ``?`` starts its options (``s3://b/docs/*.parquet?endpoint_override=...``),
    never a glob character."""
    pattern, options = None, ""
    if "://" in uri and "?" in uri:
        uri, options = uri.split("?", 1)
        options = "?" + options
    if any(c in uri for c in "*?["):
        uri, pattern = uri.rsplit("/", 1) if "/" in uri else (".", uri)
    uri += options
    fs, root = pafs.FileSystem.from_uri(uri) if "://" in uri else (
        pafs.LocalFileSystem(), str(PurePosixPath(uri).as_posix()))
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.File:
        return fs, [root]
    if info.type != pafs.FileType.Directory:
        raise FileNotFoundError(f"no input at {uri}")
    found = fs.get_file_info(pafs.FileSelector(root, recursive=pattern is None))
    files = [f.path for f in found if f.type == pafs.FileType.File
             and PurePosixPath(f.path).suffix.lower() in FORMATS
             and not PurePosixPath(f.path).name.startswith((".", "_"))
             and (pattern is None or fnmatch.fnmatch(PurePosixPath(f.path).name, pattern))]
    return fs, sorted(files)


def output_name(path: str, inputs: list[str]) -> str:
    """A file's name in OUTPUT: its stem, or its path below the inputs' common folder."""
    parents = {str(PurePosixPath(p).parent) for p in inputs}
    stem = PurePosixPath(path).stem
    if len(parents) == 1:
        return stem
    common = PurePosixPath(_common_parent(inputs))
    relative = PurePosixPath(path).relative_to(common).with_suffix("")
    return "__".join(relative.parts) or stem


def _common_parent(paths: list[str]) -> str:
    parts = [PurePosixPath(p).parent.parts for p in paths]
    common = []
    for level in zip(*parts, strict=False):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    return str(PurePosixPath(*common)) if common else "/"


def is_openai_batch(fs: pafs.FileSystem, path: str) -> bool:
    """A JSONL file whose first line is an OpenAI batch request line."""
    if FORMATS.get(PurePosixPath(path).suffix.lower()) != "json":
        return False
    with fs.open_input_stream(path) as stream:
        first = stream.read(1 << 20).split(b"\n", 1)[0]
    try:
        line = json.loads(first)
    except ValueError:
        return False
    return isinstance(line, dict) and {"custom_id", "body"} <= line.keys()


def run_job(input_uri: str, plan: JobPlan) -> dict:
    """Embed every input not yet in the output; return the job's summary."""
    import ray

    ray.data.DataContext.get_current().wait_for_min_actors_s = ACTORS_READY_S
    fs, inputs = list_inputs(input_uri)
    out_fs, out_root = _output_fs(plan.output)
    out_fs.create_dir(out_root, recursive=True)
    summary = {"files": len(inputs), "skipped": [], "rows": 0, "failed_rows": 0,
               "failed_files": [], "seconds": 0.0}
    start = time.perf_counter()
    threads = max(1, round(plan.actor_cpus))
    for path in inputs:
        name = output_name(path, inputs)
        openai = plan.mode == "openai-batch" or (plan.mode == "auto"
                                                  and is_openai_batch(fs, path))
        done = f"{out_root}/{name}.output.jsonl" if openai else f"{out_root}/{name}/{DONE}"
        if out_fs.get_file_info(done).type != pafs.FileType.NotFound:
            summary["skipped"].append(path)
            _say(f"{path}: already in {plan.output}, skipped")
            continue
        try:
            if openai:
                rows, failed = _embed_batch_file(ray, fs, path, out_fs, out_root, name, plan,
                                                 threads, summary)
            else:
                rows, failed = _embed_table_file(ray, fs, path, out_fs, out_root, name, plan,
                                                 threads)
        except Exception as exc:  # one unreadable file must not lose the others
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
            summary["failed_files"].append({"path": path, "errors": [reason]})
            _say(f"{path}: failed: {reason}")
            continue
        summary["rows"] += rows
        summary["failed_rows"] += failed
        _say(f"{path}: {rows} rows, {failed} failed -> {done.removesuffix('/' + DONE)}")
    summary["seconds"] = round(time.perf_counter() - start, 2)
    # Also beside the outputs ("_" keeps parquet readers away): Ray may print to stdout too.
    _write_lines(out_fs, f"{out_root}/{SUMMARY}", [json.dumps(summary, indent=2)])
    return summary


def _output_fs(uri: str) -> tuple[pafs.FileSystem, str]:
    if "://" in uri:
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), str(PurePosixPath(uri).as_posix())


def _embed_table_file(ray, fs, path: str, out_fs, out_root: str, name: str, plan: JobPlan,
                      threads: int) -> tuple[int, int]:
    reader = {"parquet": ray.data.read_parquet, "json": ray.data.read_json,
              "csv": ray.data.read_csv}[FORMATS[PurePosixPath(path).suffix.lower()]]
    final = f"{out_root}/{name}"
    # Object stores cannot rename a folder: the parquet goes where it belongs, and a marker
    # written last says it is complete. A crashed run's partial files are cleared first.
    out_fs.delete_dir_contents(final, missing_dir_ok=True)
    dataset = reader(path, filesystem=fs, ray_remote_args=IO_TASKS).map_batches(
        RowEncoder, batch_format="pyarrow", batch_size=plan.batch_size,
        compute=ray.data.ActorPoolStrategy(size=plan.actors), scheduling_strategy="SPREAD",
        num_cpus=plan.actor_cpus, fn_constructor_args=(plan.settings, plan.options, threads))
    dataset.write_parquet(final, filesystem=out_fs, ray_remote_args=IO_TASKS)
    errors = pads.dataset(final, filesystem=out_fs, format="parquet").to_table(
        columns=[ERROR]).column(ERROR)
    _write_lines(out_fs, f"{final}/{DONE}", [])  # complete: only now does a re-run skip it
    return len(errors), errors.length() - errors.null_count


def _embed_batch_file(ray, fs, path: str, out_fs, out_root: str, name: str, plan: JobPlan,
                      threads: int, summary: dict) -> tuple[int, int]:
    with fs.open_input_stream(path) as stream:
        lines, problems = parse_batch_file(stream.read())
    if problems:
        summary["failed_files"].append({"path": path, "errors": problems[:20]})
        _say(f"{path}: failed validation: {problems[:3]}")
        return 0, 0
    items = [{"number": ln.number, "custom_id": ln.custom_id, "body": ln.body} for ln in lines]
    blocks = max(1, math.ceil(len(items) / plan.batch_size))
    answers = ray.data.from_items(items, override_num_blocks=blocks).map_batches(
        LineAnswerer, batch_format="pyarrow", batch_size=plan.batch_size,
        compute=ray.data.ActorPoolStrategy(size=plan.actors), scheduling_strategy="SPREAD",
        num_cpus=plan.actor_cpus, fn_constructor_args=(plan.settings, threads))
    outputs: dict[int, tuple[bool, str]] = {}
    for batch in answers.iter_batches(batch_format="pyarrow"):
        for number, ok, line in zip(batch.column("number").to_pylist(),
                                    batch.column("succeeded").to_pylist(),
                                    batch.column("line").to_pylist(), strict=True):
            outputs[number] = (ok, line)
    ordered = [outputs[n] for n in sorted(outputs)]  # the input's order, as OpenAI keeps it
    _write_lines(out_fs, f"{out_root}/{name}.errors.jsonl",
                 [line for ok, line in ordered if not ok])
    _write_lines(out_fs, f"{out_root}/{name}.output.jsonl",  # last: it marks completion
                 [line for ok, line in ordered if ok])
    return len(ordered), sum(not ok for ok, _ in ordered)


def _write_lines(fs: pafs.FileSystem, path: str, lines: list[str]) -> None:
    staging = f"{path}.{uuid.uuid4().hex[:8]}.partial"
    with fs.open_output_stream(staging) as out:
        for line in lines:
            out.write(line.encode() + b"\n")
    fs.move(staging, path)


def _say(message: str) -> None:
    print(f"jina-embed: {message}", file=sys.stderr, flush=True)  # stdout is the summary
