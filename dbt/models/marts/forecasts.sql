{{ config(materialized='view') }}

{#- Published forecasts for the API and analysts, flagged with the latest batch per metric. -#}

with

forecasts as (

    select * from {{ ref('stg_serving__forecasts') }}

),

latest as (

    select metric, max(created_at) as latest_created_at
    from forecasts
    group by metric

)

select
    forecasts.batch_id,
    forecasts.service,
    forecasts.metric,
    forecasts.ds,
    forecasts.step,
    forecasts.p50,
    forecasts.p90,
    forecasts.p95,
    forecasts.model_name,
    forecasts.model_version,
    forecasts.created_at,
    forecasts.created_at = latest.latest_created_at as is_latest_batch
from forecasts
inner join latest
    on forecasts.metric = latest.metric
