{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['batch_id', 'service', 'metric', 'ds'],
        incremental_predicates=scaleahead.window_predicates('ds'),
    )
}}

{#-
    Forecast vs actual: one row per published forecast step whose 5-minute bucket has an
    observed value. Rows appear as actuals arrive (the increment's buckets), so accuracy
    accumulates without rescanning history.
-#}

with

forecasts as (

    select *
    from {{ ref('stg_serving__forecasts') }}
    where {{ scaleahead.in_window('ds') }}

),

actuals as (

    select service, ds, request_rate, cpu_cores, latency_ms
    from {{ ref('service_demand_5m') }}
    where {{ scaleahead.in_window('ds') }}

),

joined as (

    select
        forecasts.batch_id,
        forecasts.service,
        forecasts.metric,
        forecasts.ds,
        forecasts.step,
        forecasts.p50,
        forecasts.p90,
        forecasts.p95,
        case forecasts.metric
            when 'request_rate' then actuals.request_rate
            when 'cpu_cores' then actuals.cpu_cores
            when 'latency_ms' then actuals.latency_ms
        end as actual,
        forecasts.model_name,
        forecasts.model_version,
        forecasts.created_at
    from forecasts
    inner join actuals
        on forecasts.service = actuals.service
        and forecasts.ds = actuals.ds

),

final as (

    select
        batch_id,
        service,
        metric,
        ds,
        step,
        p50,
        p90,
        p95,
        actual,
        actual - p50 as error,
        abs(actual - p50) as abs_error,
        case when actual <> 0 then abs(actual - p50) / abs(actual) end as abs_pct_error,
        actual <= p90 as within_p90,
        actual <= p95 as within_p95,
        model_name,
        model_version,
        created_at
    from joined
    where actual is not null

)

-- Time order lets increments prune history (see int_telemetry_1m).
select * from final
order by ds
