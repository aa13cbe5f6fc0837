"""
### Telemetry ingest

Every five minutes: loads new landing-folder files (CSV, NDJSON, Parquet, NAB-style CSVs) and
pulls the configured Prometheus queries (`ml/ingest.yaml`) up to the run's data interval end,
into `raw.telemetry`; reloads the service catalog. Every row is accounted for in
`raw.ingest_batches`: loaded, quarantined with a reason (`raw.quarantine`) or counted as a
duplicate. Then the quality gate's `ingest` checkpoint validates the batches just loaded
(Great Expectations, `ml/quality.yaml`). Emits the `raw_telemetry` Asset, which triggers the
transform pipeline, only when rows landed and the gate does not block; otherwise the gate task
ends skipped with the reason (no Asset event). Per-service failures only quarantine the
services at fault.
"""

from airflow.sdk import dag, get_current_context, task

from scaleahead.orchestration import DEFAULT_ARGS, RAW_TELEMETRY, START_DATE, interval, schedule


@dag(
    schedule=schedule("ingest"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    doc_md=__doc__,
    tags=["scaleahead", "ingest"],
)
def telemetry_ingest():
    @task
    def ingest_landing() -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from scaleahead import tasks

        _, end = interval(get_current_context())
        report = tasks.ingest(as_of=end)
        if not report.get("new_data"):
            # A skipped task emits no Asset event, so the transform DAG is not triggered.
            raise AirflowSkipException(
                f"no new rows ({report.get('files_seen', 0)} batches seen, "
                f"{report.get('files_skipped', 0)} already loaded)"
            )
        return report

    @task(outlets=[RAW_TELEMETRY], retries=0)
    def quality_gate_raw(report: dict) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from scaleahead import tasks

        context = get_current_context()
        loaded = [b["batch_id"] for b in report.get("batches", []) if b.get("rows_loaded")]
        result = tasks.gate("ingest", run_id=f"ingest:{context['run_id']}", batch_ids=loaded)
        if result.get("blocking"):
            raise AirflowSkipException(f"quality gate (ingest) blocks: {result.get('reason')}")
        return result

    quality_gate_raw(ingest_landing())


telemetry_ingest()
