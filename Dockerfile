# syntax=docker/dockerfile:1.7
# One image for every Meterline process; the command selects it:
#   python -m ingest | python -m aggregator | python -m reporter | python -m entitlements_api
#   meterline migrate | meterline reconcile run | meterline report run
# Settings (and every secret) come from the environment at run time; none is baked in.
# Build: docker build -t meterline:$(git rev-parse --short HEAD) .

ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/meterline
ENV PATH=/opt/meterline/bin:$PATH
WORKDIR /src
# Dependencies first, pinned by the constraints file, so code changes reuse this layer.
COPY pyproject.toml constraints.txt README.md ./
RUN mkdir -p meterline ingest aggregator reporter entitlements_api \
    && pip install -c constraints.txt . \
    && pip uninstall -y meterline
COPY meterline ./meterline
COPY ingest ./ingest
COPY aggregator ./aggregator
COPY reporter ./reporter
COPY entitlements_api ./entitlements_api
RUN pip install --no-deps -c constraints.txt .

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="meterline" \
      org.opencontainers.image.description="Meterline usage metering: ingest, aggregator, reporter, entitlements API" \
      org.opencontainers.image.source="https://example.invalid/meterline"
ENV PATH=/opt/meterline/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    METERLINE_HOST=0.0.0.0 \
    METERLINE_HOME=/tmp/meterline
RUN groupadd --system --gid 10001 meterline \
    && useradd --system --uid 10001 --gid meterline --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin meterline
COPY --from=build /opt/meterline /opt/meterline
WORKDIR /srv/meterline
USER 10001:10001
EXPOSE 8001 8002 8003 8004
STOPSIGNAL SIGTERM
CMD ["python", "-m", "ingest"]
