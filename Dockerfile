# One image for every ml-workbench service (api, ingest, workers, jobs maintenance,
# workbench, the MLflow tracking server). CPU torch by default; GPU workers build it with
#   docker compose build --build-arg TORCH_VARIANT=cu124 worker-gpu0
# (docker-compose.yml already does that for the worker image).
FROM python:3.11-slim

# cpu, or a CUDA wheel tag of download.pytorch.org (cu124, cu126, ...).
ARG TORCH_VARIANT=cpu
ARG TORCH_SPEC="torch>=2.4"

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# redis-tools: redis-cli for operators; tini: reaps children and forwards SIGTERM so the
# workers' long stop_grace_period lets a running job finish or fail cleanly.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini redis-tools \
 && rm -rf /var/lib/apt/lists/*

# torch first, from the variant's index, so that installing the project never swaps it for
# the multi-GB default CUDA build (pyproject pins only a range).
RUN pip install --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}" "${TORCH_SPEC}"

WORKDIR /app
COPY pyproject.toml README.md ./
COPY mlwb ./mlwb
COPY api ./api
COPY workbench ./workbench
COPY jobs ./jobs
COPY experiments ./experiments
COPY reports ./reports
COPY wb ./wb
# The `server` extra: the Postgres driver and boto3 (MLflow's S3 artifact store, data sets).
RUN pip install ".[server]"

RUN useradd --create-home --uid 10001 wb \
 && mkdir -p /data \
 && chown wb:wb /data
USER wb
ENV WB_DATA_DIR=/data
VOLUME ["/data"]

ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["wb", "--help"]
