"""
### Forecast publishing

Runs when the demand mart has passed its quality gate: loads the `champion` model from the
MLflow registry and writes the next horizon of p50/p90/p95 forecasts per service into
`serving.forecasts`, which the forecast API serves.
"""

from airflow.sdk import dag, get_current_context, task

from scaleahead.orchestration import DEFAULT_ARGS, DEMAND_MART, FORECASTS, START_DATE, interval


@dag(
    schedule=[DEMAND_MART],
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    doc_md=__doc__,
    tags=["scaleahead", "ml", "serving"],
)
def forecast_publish():
    @task(outlets=[FORECASTS])
    def publish_forecasts() -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from scaleahead import tasks

        # An error-severity quality gate holds back models and forecasts; the API keeps the
        # last good batch, marked stale.
        reason = tasks.gate_block_reason()
        if reason:
            raise AirflowSkipException(reason)

        _, end = interval(get_current_context())
        return tasks.publish(created_at=end)

    publish_forecasts()


forecast_publish()
