# syntax=docker/dockerfile:1.7
# One image for every Meterline process; the command selects it:
#   python -m ingest | python -m aggregator | python -m reporter | python -m entitlements_api
#   meterline migrate | meterline reconcile run | meterline report run
# Settings (and every secret) come from the environment at run time; none is baked in.
# Build: docker build -t meterline:$(git rev-parse --short HEAD) .
# The image holds the production set only (pyproject's dependencies; no dev stack, no emulator).
# The Stripe emulator, a dev tool, has its own target (compose's dev profile, the k8s dev overlay):
#   docker build --target stripe-emulator -t meterline-stripe-emulator:local .

ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/meterline
ENV PATH=/opt/meterline/bin:$PATH
WORKDIR /src
# Dependencies first, pinned by the constraints file, so code changes reuse this layer.
COPY pyproject.toml constraints.txt README.md ./
RUN mkdir -p meterline meterline_ops ingest aggregator reporter entitlements_api \
    && pip install -c constraints.txt . \
    && pip uninstall -y meterline
COPY meterline ./meterline
COPY meterline_ops ./meterline_ops
COPY ingest ./ingest
COPY aggregator ./aggregator
COPY reporter ./reporter
COPY entitlements_api ./entitlements_api
RUN pip install --no-deps -c constraints.txt .

FROM build AS stripe-emulator-build
COPY devstack ./devstack
# The emulator needs nothing beyond the production set; the dev stack's server binaries stay out.
RUN pip install --no-deps -c constraints.txt ./devstack

FROM ${PYTHON_IMAGE} AS stripe-emulator
ENV PATH=/opt/meterline/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
COPY --from=stripe-emulator-build /opt/meterline /opt/meterline
USER 10001:10001
EXPOSE 12111
CMD ["python", "-m", "stripe_emulator", "--host", "0.0.0.0", "--port", "12111"]

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
