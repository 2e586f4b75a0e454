# One image for every labq service. EXTRAS picks the TensorFlow build for workers:
#   api / migrate: EXTRAS=""       (no TensorFlow at all: the API never imports it)
#   worker (GPU):  EXTRAS="[gpu]"  (tensorflow[and-cuda])
#   worker (CPU):  EXTRAS="[cpu]"
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 LABQ_DATA_DIR=/data
COPY pyproject.toml README.md ./
COPY core ./core
COPY db ./db
COPY api ./api
COPY worker ./worker
COPY cli ./cli
ARG EXTRAS=""
RUN pip install ".${EXTRAS}" && mkdir -p /data
ENTRYPOINT ["labq"]
