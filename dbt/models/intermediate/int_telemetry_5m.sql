{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['service', 'metric', 'ds'],
        incremental_predicates=scaleahead.window_predicates('ds'),
    )
}}

{%- set bucket_minutes = 5 -%}

{#-
    The 1-minute grid is gap-free per series, so its 5-minute buckets are too: each bucket's
    value is the mean of its samples (sample-weighted mean of the minute means), NULL when no
    minute had one. The window is aligned to 5 minutes, so only whole buckets are rebuilt.
-#}

with

minutes as (

    select
        service,
        metric,
        {{ scaleahead.time_bucket('ds', bucket_minutes) }} as ds,
        value,
        samples
    from {{ ref('int_telemetry_1m') }}
    where {{ scaleahead.in_window('ds') }}

),

final as (

    select
        service,
        metric,
        ds,
        sum(value * samples) / nullif(sum(samples), 0) as value,
        cast(sum(samples) as {{ dbt.type_bigint() }}) as samples,
        sum(samples) = 0 as is_gap
    from minutes
    group by service, metric, ds

)

-- Time order lets increments prune history (see int_telemetry_1m).
select * from final
order by ds
