# scaleahead — the two commands a user types on a fresh machine are `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
BIN := $(VENV)/bin

.PHONY: help setup demo up down test test-fast bench lint format clean proto openapi

help:
	@echo "make demo    run the main job end to end (generate -> Airflow DAGs -> API)"
	@echo "make up      production mode: Airflow, MLflow, API, Prometheus, Alertmanager on PostgreSQL"
	@echo "make down    stop everything \`make up\` started"
	@echo "make test    run the test suite"
	@echo "make bench   run all benchmarks (results in benchmarks/results/)"
	@echo "make lint    ruff"
	@echo "make setup   create .venv from uv.lock (idempotent)"

setup:
	@bash scripts/bootstrap.sh

demo: setup
	$(BIN)/scaleahead demo $(DEMO_ARGS)

up: setup
	$(BIN)/scaleahead up $(UP_ARGS)

down:
	$(BIN)/scaleahead down

test: setup
	$(BIN)/pytest $(PYTEST_ARGS)

test-fast: setup
	$(BIN)/pytest -m "not e2e" $(PYTEST_ARGS)

bench: setup
	$(BIN)/scaleahead bench all

lint: setup
	$(BIN)/ruff check src tests dags
	$(BIN)/ruff format --check src tests dags

format: setup
	$(BIN)/ruff format src tests dags
	$(BIN)/ruff check --fix src tests dags

clean:
	rm -rf warehouse/landing warehouse/*.duckdb* warehouse/mlflow warehouse/airflow warehouse/reports warehouse/dbt warehouse/labels warehouse/gx*

# Regenerate the KEDA external scaler gRPC modules (tests/test_grpc.py checks they are current).
proto: setup
	$(BIN)/python -m grpc_tools.protoc -I src --python_out=src --grpc_python_out=src src/scaleahead/api/externalscaler/externalscaler.proto

# Rewrite the committed OpenAPI contract (tests/test_api_scaling.py checks it matches the app).
openapi: setup
	$(BIN)/python -m scaleahead.api.openapi
