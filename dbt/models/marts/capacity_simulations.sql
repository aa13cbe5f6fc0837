{{ config(materialized='view') }}

{#- The capacity twin's latest replay per service: one row per (service, policy), with the
    predictive policy's savings against the cost-matched reactive HPA alongside. A view, so a
    weekly twin run shows up without a dbt build. -#}

with

simulations as (

    select * from {{ ref('stg_serving__capacity_simulations') }}

),

latest_run as (

    select service, max(as_of) as as_of
    from simulations
    group by service

),

latest as (

    select simulations.*
    from simulations
    inner join latest_run
        on simulations.service = latest_run.service
        and simulations.as_of = latest_run.as_of

),

cost_matched as (

    select service, underprovisioned_minutes, replica_hours
    from latest
    where policy = 'reactive_cost_matched'

)

select
    latest.service,
    latest.policy,
    latest.as_of,
    latest.window_start,
    latest.replay_start,
    latest.run_id,
    latest.underprovisioned_minutes,
    latest.unserved_demand,
    latest.replica_hours,
    latest.peak_replicas,
    latest.scaling_actions,
    latest.hpa_target,
    latest.underprovisioned_vs_reactive,
    latest.underprovisioned_vs_oracle,
    latest.replica_hours_vs_reactive,
    latest.replica_hours_vs_oracle,
    case
        when cost_matched.underprovisioned_minutes > 0
            then latest.underprovisioned_minutes / cost_matched.underprovisioned_minutes
    end as underprovisioned_vs_cost_matched,
    latest.created_at
from latest
left join cost_matched
    on latest.service = cost_matched.service
