# The project image: the locked environment plus the repo. Used by docker-compose.yml for every
# scaleahead process (Airflow components, MLflow server, API).
FROM python:3.11-slim-bookworm
ENV UV_PROJECT_ENVIRONMENT=/opt/venv PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1
RUN pip install --no-cache-dir uv
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY . .
RUN uv sync --frozen --no-dev
# The PostgreSQL driver comes from the lock (`make up` needs it too). Celery, for the `celery`
# compose profile only, is not in the lock; installed after the last `uv sync`, which would
# remove packages outside the lock.
RUN uv pip install --python /opt/venv/bin/python --no-cache \
    "apache-airflow-providers-celery==3.26.0"
RUN useradd --uid 10001 --create-home scaleahead \
    && mkdir -p /data/warehouse /data/lake /data/airflow /data/mlflow-artifacts \
    && chown -R scaleahead /data
USER scaleahead
ENV SCALEAHEAD_HOME=/app SCALEAHEAD_WAREHOUSE_DIR=/data/warehouse
EXPOSE 8000 50051
CMD ["scaleahead", "serve", "--host", "0.0.0.0", "--port", "8000"]
