"""
### Capacity twin

Weekly: replays the latest 14 days of each service's demand (`marts.service_demand_5m`) against
reactive HPA, the cost-matched HPA, scaleahead's predictive policy (the real forecaster re-run
every 5 minutes of the replay, as forecast_publish runs after each ingest), cloud-style
scheduled scaling, static provisioning and the oracle, with capacity and replica bounds from
`marts.services`. Stores one row per service and policy in `serving.capacity_simulations`
(replaced on rerun for the same interval end); the `capacity_simulations` mart (a dbt view)
shows the latest run per service and policy.
"""

from airflow.sdk import dag, get_current_context, task

from scaleahead.orchestration import DEFAULT_ARGS, START_DATE, interval, schedule


@dag(
    schedule=schedule("twin"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    doc_md=__doc__,
    tags=["scaleahead", "twin", "capacity"],
)
def capacity_twin():
    @task
    def simulate() -> dict:
        from scaleahead import tasks

        _, end = interval(get_current_context())
        return tasks.twin(as_of=end)

    simulate()


capacity_twin()
