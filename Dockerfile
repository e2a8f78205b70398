# alvar's backend, worker and CLI (a first version; `alvar up` and docker-compose come with the stack issue).
#   docker build -t alvar .
#   docker run -p 9090:9090 -e REDIS_URL=redis://redis:6379/0 -e LABEL_STUDIO_URL=... alvar
#   docker run -e REDIS_URL=... alvar alvar worker
FROM python:3.11-slim

# The CPU build of torch keeps the image small; the default index would bring CUDA (several GB).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    MODEL_DIR=/data/models \
    ALVAR_DATA_DIR=/data

RUN useradd --create-home --uid 1000 alvar && mkdir -p /data && chown alvar /data
WORKDIR /app
RUN pip install --index-url "$TORCH_INDEX_URL" torch==2.13.0
COPY pyproject.toml README.md ./
COPY alvar alvar
COPY backend backend
COPY generator generator
COPY scripts scripts
COPY label_config label_config
RUN pip install .

USER alvar
VOLUME /data
EXPOSE 9090
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:9090/metrics', timeout=2)" || exit 1
CMD ["alvar", "backend", "--host", "0.0.0.0", "--port", "9090", "--workers", "2"]
