-- One PostgreSQL for the compose stack: Airflow metadata, MLflow backend store, DuckLake catalog.
CREATE DATABASE airflow;
CREATE DATABASE mlflow;
CREATE DATABASE scaleahead_lake;
