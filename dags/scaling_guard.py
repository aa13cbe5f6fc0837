"""
### Scaling guard

Daily: replays each service's recent demand (`guard_window_days`, default 14, of
`marts.service_demand_5m` before the data interval end) through the capacity twin and compares
scaleahead's predictive policy, as if it had driven, with the HPA given the same replica-hours.
The guard's rule (`scaleahead.domain.modes.decide_mode`) then keeps, promotes
(`shadow -> predictive`: a clear win with enough days and incidents) or demotes
(`predictive -> shadow`: predictive stopped winning) each service; pins from settings
(`SCALEAHEAD_SCALING_MODES_PINNED`) win. One row per service and run in `serving.scaling_modes`
(replaced on rerun for the same interval end); the API serves each service in its latest mode
and the `scaling_modes` mart (a dbt view) shows it with its evidence.
"""

from airflow.sdk import dag, get_current_context, task

from scaleahead.orchestration import DEFAULT_ARGS, START_DATE, interval, schedule


@dag(
    schedule=schedule("guard"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    doc_md=__doc__,
    tags=["scaleahead", "twin", "scaling"],
)
def scaling_guard():
    @task
    def decide_modes() -> dict:
        from scaleahead import tasks

        _, end = interval(get_current_context())
        return tasks.guard(as_of=end)

    decide_modes()


scaling_guard()
