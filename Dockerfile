# syntax=docker/dockerfile:1
# tokenledger: `ledger serve` on python:3.11-slim, as a non-root user.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY projections ./projections
COPY migrations ./migrations
COPY clients ./clients
RUN python -m venv /opt/ledger \
    && /opt/ledger/bin/pip install --upgrade pip \
    && /opt/ledger/bin/pip install .

FROM python:3.11-slim
ENV PATH=/opt/ledger/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LEDGER_DATABASE_URL=sqlite:////data/ledger.db
RUN groupadd --system --gid 10001 ledger \
    && useradd --system --uid 10001 --gid ledger --home-dir /data --create-home ledger
COPY --from=build /opt/ledger /opt/ledger
WORKDIR /data
USER ledger
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"]
CMD ["ledger", "serve", "--host", "0.0.0.0", "--port", "8000"]
