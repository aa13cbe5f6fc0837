"""
### Warehouse transform and quality gate

Runs when new raw telemetry lands: `dbt build` (staging -> intermediate -> marts, with the
models' data tests), then the Great Expectations gate's `transform` checkpoint on the
5-minute demand mart buckets of the run (completeness, duplicates, freshness, volume versus
last week). The verdict is recorded in `quality.gate_runs`; the `service_demand_5m` Asset is
emitted either way and the forecast DAGs skip with the gate's reason while it blocks.
Per-service failures quarantine only those services (left out of publishing).
"""

from airflow.sdk import dag, get_current_context, task

from scaleahead.orchestration import DEFAULT_ARGS, DEMAND_MART, RAW_TELEMETRY, START_DATE, interval


@dag(
    schedule=[RAW_TELEMETRY],
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    doc_md=__doc__,
    tags=["scaleahead", "dbt", "quality"],
)
def warehouse_transform():
    @task
    def dbt_build() -> dict:
        from scaleahead import tasks

        return tasks.transform()

    @task(outlets=[DEMAND_MART], retries=0)
    def quality_gate(_: dict) -> dict:
        from scaleahead import tasks

        context = get_current_context()
        _, end = interval(context)
        start = end - tasks.mart_window() if end is not None else None
        return tasks.gate(
            "transform", run_id=f"transform:{context['run_id']}", window_start=start, window_end=end
        )

    quality_gate(dbt_build())


warehouse_transform()
