# jina-embeddings-v3 on ONNX Runtime (CPU), served by Ray Serve on port 10002.
#   docker build -t jina-embeddings-serve .                    # model downloaded at build time
#   docker run --shm-size=2g -p 10002:10002 jina-embeddings-serve
# Or mount a model folder and skip the download (deploy/docker.md):
#   docker build --build-arg DOWNLOAD_MODEL=0 -t jina-embeddings-serve .
#   docker run --shm-size=2g -p 10002:10002 -v ~/models/jina-embeddings-v3:/models/jina:ro \
#     -e EMBEDDINGS_MODEL=/models/jina jina-embeddings-serve
# With jina-reranker-v2 beside it (both downloaded and prepared at build time):
#   docker build --build-arg CONFIG=serve_config.rerank.yaml -t jina-embeddings-serve .
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/home/app/.cache/huggingface

RUN useradd --create-home --uid 1000 app
WORKDIR /app

# Dependencies first (pinned, one layer that code changes do not invalidate), then the
# project as a whole, minus what .dockerignore leaves out (tests, benchmarks, models).
COPY requirements.txt .
RUN pip install -r requirements.txt
COPY . .
RUN pip install --no-deps . && rm -rf build *.egg-info

USER app
ARG MODEL=jinaai/jina-embeddings-v3
ARG CONFIG=serve_config.yaml
ARG DOWNLOAD_MODEL=1
# Only config, tokenizer and onnx/model.onnx with its external data (2.3 GB for fp32),
# then the prepared copy the encoders serve (2.3 GB more; else every container builds it
# at its first start, ~20 s): docs/decisions/real-graph.md. Every model CONFIG serves.
RUN if [ "$DOWNLOAD_MODEL" = "1" ]; then \
      jina-serve --prepare --config "$CONFIG" --model "$MODEL"; fi
# The container never reaches the hub at run time: the model is in the image or mounted.
ENV HF_HUB_OFFLINE=1 \
    EMBEDDINGS_MODEL=${MODEL} \
    EMBEDDINGS_CONFIG=/app/${CONFIG}

EXPOSE 10002
# jina-serve: serve run serve_config.yaml, with SIGTERM (docker stop) as a graceful drain.
ENTRYPOINT ["jina-serve"]
