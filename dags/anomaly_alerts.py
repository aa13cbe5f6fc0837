"""
### Anomaly alerts

Runs after forecasts are published: scores the latest demand-mart data per service and metric
with the causal anomaly detector, keeps `serving.alerts` current (firing / resolved) and
delivers firing alerts to Alertmanager when `SCALEAHEAD_ALERTMANAGER_URL` is set.
"""

from airflow.sdk import dag, get_current_context, task

from scaleahead.orchestration import ALERTS, DEFAULT_ARGS, FORECASTS, START_DATE, interval


@dag(
    schedule=[FORECASTS],
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    doc_md=__doc__,
    tags=["scaleahead", "anomaly", "alerting"],
)
def anomaly_alerts():
    @task(outlets=[ALERTS])
    def detect_and_alert() -> dict:
        from scaleahead import tasks

        _, end = interval(get_current_context())
        return tasks.alerts(now=end)

    detect_and_alert()


anomaly_alerts()
