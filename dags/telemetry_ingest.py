"""
### Telemetry ingest

Loads new landing-folder files (CSV, NDJSON, Parquet) into `raw.telemetry` every five minutes.
Every row is accounted for in `raw.ingest_batches`: loaded, quarantined with a reason
(`raw.quarantine`) or counted as a duplicate. Emits the `raw_telemetry` Asset, which
triggers the transform pipeline.
"""

from airflow.sdk import dag, get_current_context, task

from scaleahead.orchestration import DEFAULT_ARGS, RAW_TELEMETRY, START_DATE, interval


@dag(
    schedule="*/5 * * * *",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    doc_md=__doc__,
    tags=["scaleahead", "ingest"],
)
def telemetry_ingest():
    @task(outlets=[RAW_TELEMETRY])
    def ingest_landing() -> dict:
        from scaleahead import tasks

        _, end = interval(get_current_context())
        return tasks.ingest(as_of=end)

    ingest_landing()


telemetry_ingest()
