# The project image: the locked environment plus the repo. Used by docker-compose.yml.
FROM python:3.11-slim-bookworm
ENV UV_PROJECT_ENVIRONMENT=/opt/venv PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1
RUN pip install --no-cache-dir uv
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY . .
RUN uv sync --frozen --no-dev
ENV SCALEAHEAD_HOME=/app SCALEAHEAD_WAREHOUSE_DIR=/data/warehouse
EXPOSE 8000
CMD ["scaleahead", "serve", "--host", "0.0.0.0", "--port", "8000"]
