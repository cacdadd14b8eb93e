# driftnet: one image for every role; the command picks it (collector, loader, up, sql, ...).
#   docker build -t driftnet .
#   docker run --rm driftnet --help
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Dependencies first: a code change does not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir -p schemas ingest analytics driftnet \
    && pip install . && pip uninstall -y driftnet
COPY schemas ./schemas
COPY ingest ./ingest
COPY analytics ./analytics
COPY driftnet ./driftnet
RUN pip install --no-deps . && rm -rf /src

# Runs unprivileged; its working directory holds the collector's disk spool
# (.driftnet/spool.sqlite) and the embedded log when Kafka is not configured.
RUN useradd --create-home --uid 10001 driftnet \
    && mkdir -p /data /lake \
    && chown driftnet:driftnet /data /lake
USER driftnet
WORKDIR /data

EXPOSE 8080
ENTRYPOINT ["driftnet"]
CMD ["--help"]
