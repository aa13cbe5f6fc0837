{{ config(materialized='view') }}

{#- Every scaling guard decision, one row per run and service, with whether it is the one in
    force: promotions, demotions and the evidence behind each. -#}

with

decisions as (

    select * from {{ ref('stg_serving__scaling_modes') }}

),

latest_run as (

    select service, max(as_of) as as_of
    from decisions
    group by service

)

select
    decisions.service,
    decisions.as_of,
    decisions.mode,
    decisions.previous_mode,
    decisions.changed,
    decisions.reason,
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
    decisions.as_of = latest_run.as_of as is_latest,
    decisions.run_id,
    decisions.created_at as decided_at
from decisions
inner join latest_run
    on decisions.service = latest_run.service
