{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['service', 'metric'],
    )
}}

{#-
    One row per (service, metric) series: first and last sample, and the latest ingested_at
    built so far (the watermark scaleahead.transform uses to find late rows). Each increment
    merges the window's bounds into the existing ones, so it costs the window, not the history.
-#}

with

increment as (

    select
        service,
        metric,
        min(ts) as first_ts,
        max(ts) as last_ts,
        max(ingested_at) as last_ingested_at
    from {{ ref('stg_raw__telemetry') }}
    where {{ scaleahead.in_window('ts') }}
    group by service, metric

)

{% if is_incremental() %}

, merged as (

    select
        increment.service,
        increment.metric,
        case
            when previous.first_ts is null or increment.first_ts < previous.first_ts
                then increment.first_ts
            else previous.first_ts
        end as first_ts,
        case
            when previous.last_ts is null or increment.last_ts > previous.last_ts
                then increment.last_ts
            else previous.last_ts
        end as last_ts,
        case
            when previous.last_ingested_at is null
                or increment.last_ingested_at > previous.last_ingested_at
                then increment.last_ingested_at
            else previous.last_ingested_at
        end as last_ingested_at
    from increment
    left join {{ this }} as previous
        on increment.service = previous.service
        and increment.metric = previous.metric

)

select * from merged

{% else %}

select * from increment

{% endif %}
