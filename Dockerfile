# cloudflare-oauth-exporter: build a wheel into a venv, copy only the venv into a slim runtime.
# PYTHON_IMAGE can be any base with python3 and its venv module (the tests use Debian's).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY exporter ./exporter
COPY scripts/build-venv ./scripts/build-venv
RUN scripts/build-venv /opt/venv

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="cloudflare-oauth-exporter" \
      org.opencontainers.image.description="Prometheus exporter for the OAuth clients of Cloudflare accounts" \
      org.opencontainers.image.source="https://github.com/cloudflare-oauth-exporter/cloudflare-oauth-exporter" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/venv /opt/venv
# Bytecode was compiled at install time; never write any, so a read-only root filesystem works.
ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A fixed, non-root UID/GID (the "nonroot" convention) that Kubernetes can check with runAsNonRoot.
USER 65532:65532
EXPOSE 9878
ENTRYPOINT ["cloudflare-oauth-exporter"]
