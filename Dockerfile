# One image for every labq service. EXTRAS picks the TensorFlow build for workers:
#   api / migrate / flower: EXTRAS="monitor" (Flower; no TensorFlow: the API never imports it)
#   worker (GPU):  EXTRAS="gpu" (tensorflow[and-cuda])
#   worker (CPU):  EXTRAS="cpu"
# Dependencies are installed in a layer of their own, at the versions of requirements.lock, so
# a code change rebuilds only the last layers. The services run as the unprivileged user labq.
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 LABQ_DATA_DIR=/data
ARG EXTRAS=""
COPY pyproject.toml requirements.lock ./
COPY scripts/requirements.py ./scripts/
RUN python scripts/requirements.py ${EXTRAS} > /tmp/requirements.txt \
 && pip install -c requirements.lock -r /tmp/requirements.txt
COPY README.md ./
COPY core ./core
COPY db ./db
COPY api ./api
COPY worker ./worker
COPY cli ./cli
COPY lab ./lab
RUN pip install --no-deps . \
 && useradd --system --uid 10001 --home-dir /data labq \
 && mkdir -p /data && chown labq /data
USER labq
ENTRYPOINT ["labq"]
