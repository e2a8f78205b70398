# alvar's ML backend, worker and CLI in one image: Python 3.11, CPU-only torch, runs as the non-root user alvar.
#
# Build:
#   docker build -t alvar .
#   docker build -t alvar --build-arg TORCH_INDEX_URL=https://my-mirror/whl/cpu .   # a PyTorch index mirror
#
# Run (docker-compose.yml wires up Label Studio, PostgreSQL and Redis; see .env.example):
#   docker run -d -p 9090:9090 -v alvar-data:/data -e REDIS_URL=redis://redis-host:6379/0 \
#       -e LABEL_STUDIO_URL=http://ls-host:8080 -e LABEL_STUDIO_API_KEY=... alvar     # the ML backend (default)
#   docker run -d -v alvar-data:/data -e REDIS_URL=... -e LABEL_STUDIO_URL=... alvar alvar worker
#   docker run --rm alvar alvar --help                                                 # any other command
#
# Everything alvar writes lives under /data (one volume): MODEL_DIR=/data/models (the worker trains new
# versions, the backend serves them, so the two share the volume), ALVAR_CACHE_DIR=/data/cache, HF_HOME.
# HF_HUB_OFFLINE=1: the default models ship inside the image; set HF_HUB_OFFLINE=0 to use a Hub model id.

FROM python:3.11-slim AS build

# The CPU build of torch keeps the image small; PyPI's default wheel brings CUDA (several GB). It is installed
# first from PyTorch's CPU index; then everything else exactly as requirements/alvar.txt locks it (hashes checked),
# where torch==2.13.0+cpu is already satisfied.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/alvar
RUN /opt/alvar/bin/pip install --index-url "$TORCH_INDEX_URL" torch==2.13.0
WORKDIR /src
COPY requirements requirements
RUN /opt/alvar/bin/pip install --require-hashes --no-deps -r requirements/alvar.txt
COPY pyproject.toml README.md ./
COPY alvar alvar
COPY backend backend
COPY generator generator
COPY scripts scripts
COPY label_config label_config
# Then drop what never runs here: the test suites of the big scientific packages, and torch's C++ headers
# (only for building extensions or torch.compile's codegen, and the slim image has no compiler).
# Bytecode stays: without it every process start recompiles torch and transformers (~10 s more).
RUN /opt/alvar/bin/pip install --no-deps . \
    && site=$(/opt/alvar/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])") \
    && for package in sympy scipy sklearn networkx; do \
           if [ -d "$site/$package" ]; then find "$site/$package" -type d -name tests -prune -exec rm -rf {} +; fi; \
       done \
    && rm -rf "$site/torch/include"

FROM python:3.11-slim
ENV PATH=/opt/alvar/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    HF_HOME=/data/huggingface \
    ALVAR_DATA_DIR=/data \
    MODEL_DIR=/data/models \
    ALVAR_CACHE_DIR=/data/cache
COPY --from=build /opt/alvar /opt/alvar
# A named volume mounted on /data starts as a copy of this directory, owner included.
RUN useradd --create-home --uid 1000 alvar \
    && mkdir -p /data/models /data/cache /data/huggingface \
    && chown -R alvar:alvar /data
USER alvar
WORKDIR /home/alvar
VOLUME /data
EXPOSE 9090
# The backend answers /health only with its basic auth when BASIC_AUTH_USER is set (like every endpoint), so
# the check sends BASIC_AUTH_USER/BASIC_AUTH_PASS from the container's environment when they are set.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=5 CMD python -c "import base64, os, urllib.request; request = urllib.request.Request('http://127.0.0.1:9090/health'); user = os.environ.get('BASIC_AUTH_USER'); user and request.add_header('Authorization', 'Basic ' + base64.b64encode(f\"{user}:{os.environ.get('BASIC_AUTH_PASS', '')}\".encode()).decode()); urllib.request.urlopen(request, timeout=4)"
CMD ["alvar", "backend", "--host", "0.0.0.0", "--port", "9090", "--workers", "1"]
