{{ config(materialized='view') }}

{#- The scaling guard's latest decision per service: the mode the API serves the service in
    (before pins in the API's own settings) with the evidence it rests on. A view, so a guard
    run shows up without a dbt build. -#}

with

decisions as (

    select * from {{ ref('stg_serving__scaling_modes') }}

),

latest_run as (

    select service, max(as_of) as as_of
    from decisions
    group by service

),

mode_since as (

    {#- When the service entered its current mode: the latest run that changed it (or its
        first run). -#}
    select service, max(as_of) as mode_since
    from decisions
    where changed or previous_mode is null
    group by service

)

select
    decisions.service,
    decisions.mode,
    decisions.reason,
    decisions.previous_mode,
    decisions.changed,
    mode_since.mode_since,
    decisions.as_of,
    decisions.window_start,
    decisions.window_end,
    decisions.evidence_days,
    decisions.predictive_under_min,
    decisions.matched_under_min,
    decisions.ratio,
    decisions.incidents,
    decisions.shadow_days,
    decisions.minutes_saved,
    decisions.extra_replica_hours,
    decisions.run_id,
    decisions.created_at as decided_at
from decisions
inner join latest_run
    on decisions.service = latest_run.service
    and decisions.as_of = latest_run.as_of
left join mode_since
    on decisions.service = mode_since.service
