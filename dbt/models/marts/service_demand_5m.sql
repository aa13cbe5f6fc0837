{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['service', 'ds'],
        incremental_predicates=scaleahead.window_predicates('ds'),
    )
}}

{%- set bucket_minutes = 5 -%}
{%- set metrics = ['request_rate', 'cpu_cores', 'latency_ms'] -%}

with

series as (

    select service, metric, ds, value, samples
    from {{ ref('int_telemetry_5m') }}
    where metric in ('{{ metrics | join("', '") }}')
        and {{ scaleahead.in_window('ds') }}

),

service_bounds as (

    -- The service grid spans all of its metrics so that no metric's buckets are dropped.
    select
        service,
        min(ds) as first_ds,
        max(ds) as last_ds
    from series
    group by service

),

grid as (

    {{ scaleahead.time_grid('service_bounds', ['service'], 'first_ds', 'last_ds', bucket_minutes) }}

),

pivoted as (

    select
        service,
        ds,
        {% for metric in metrics -%}
        max(case when metric = '{{ metric }}' and samples > 0 then value end) as {{ metric }},
        {% endfor -%}
        cast(sum(case when metric = 'request_rate' then samples else 0 end) as {{ dbt.type_bigint() }}) as samples
    from series
    group by service, ds

),

joined as (

    select
        grid.service,
        grid.ds,
        {% for metric in metrics -%}
        pivoted.{{ metric }},
        {% endfor -%}
        cast(coalesce(pivoted.samples, 0) as {{ dbt.type_bigint() }}) as samples,
        pivoted.request_rate is null as is_gap
    from grid
    left join pivoted
        on grid.service = pivoted.service
        and grid.ds = pivoted.ds

),

carried as (

    -- The demand carried into the increment: the filled value of the bucket just before the
    -- window (the mart is gap-free per service, so that bucket exists once a service has
    -- started). Without a window nothing is carried.
    {% if scaleahead.window_active() -%}
    select service, demand as carried_demand
    from {{ this }}
    where ds = {{ dbt.dateadd('minute', -bucket_minutes, scaleahead.window_start()) }}
    {%- else -%}
    select service, cast(null as {{ dbt.type_float() }}) as carried_demand
    from service_bounds
    where 1 = 0
    {%- endif %}

),

filled as (

    -- Forward fill without IGNORE NULLS (not portable): every observed value opens a new
    -- group, and the group's only non-NULL value is the last observation. Group 0 (before the
    -- window's first observation) takes the carried value.
    select
        joined.*,
        count(joined.request_rate) over (
            partition by joined.service
            order by joined.ds
            rows between unbounded preceding and current row
        ) as fill_group
    from joined

),

final as (

    select
        filled.service,
        filled.ds,
        filled.request_rate,
        filled.cpu_cores,
        filled.latency_ms,
        filled.samples,
        filled.is_gap,
        coalesce(
            max(filled.request_rate) over (partition by filled.service, filled.fill_group),
            carried.carried_demand
        ) as demand
    from filled
    left join carried
        on filled.service = carried.service

)

-- Time order lets increments prune history (see int_telemetry_1m).
select
    service,
    ds,
    request_rate,
    cpu_cores,
    latency_ms,
    samples,
    is_gap,
    demand
from final
order by ds
