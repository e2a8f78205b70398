# alvar's ML backend, worker and CLI in one image (CPU torch, non-root). docker-compose.yml runs it three ways:
#   backend: alvar backend --host 0.0.0.0 --port 9090 --workers 1   (the default command)
#   worker:  alvar worker
#   init:    alvar init --demo                                      (the project steps of `alvar up`, once)
# Build: docker build -t alvar .
FROM python:3.11-slim AS build

# The CPU build of torch keeps the image small; PyPI's default wheel brings CUDA (several GB).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/alvar
RUN /opt/alvar/bin/pip install --index-url "$TORCH_INDEX_URL" torch==2.13.0
WORKDIR /src
COPY pyproject.toml README.md ./
COPY alvar alvar
COPY backend backend
COPY generator generator
COPY scripts scripts
COPY label_config label_config
RUN /opt/alvar/bin/pip install . \
    && find /opt/alvar -name __pycache__ -type d -prune -exec rm -rf {} +

FROM python:3.11-slim
ENV PATH=/opt/alvar/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    ALVAR_DATA_DIR=/data \
    MODEL_DIR=/data/models \
    ALVAR_CACHE_DIR=/data/cache
COPY --from=build /opt/alvar /opt/alvar
RUN useradd --create-home --uid 1000 alvar && mkdir -p /data && chown alvar /data
USER alvar
WORKDIR /home/alvar
VOLUME /data
EXPOSE 9090
# /health needs the backend's basic auth when BASIC_AUTH_USER is set.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=5 CMD python -c "import base64, os, urllib.request; request = urllib.request.Request('http://127.0.0.1:9090/health'); user = os.environ.get('BASIC_AUTH_USER'); user and request.add_header('Authorization', 'Basic ' + base64.b64encode(f\"{user}:{os.environ.get('BASIC_AUTH_PASS', '')}\".encode()).decode()); urllib.request.urlopen(request, timeout=4)"
CMD ["alvar", "backend", "--host", "0.0.0.0", "--port", "9090", "--workers", "1"]
