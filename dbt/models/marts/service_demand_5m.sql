{%- set bucket_minutes = 5 -%}
{%- set metrics = ['request_rate', 'cpu_cores', 'latency_ms'] -%}

with

series as (

    select service, metric, ds, value, samples
    from {{ ref('int_telemetry_5m') }}
    where metric in ('{{ metrics | join("', '") }}')

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

filled as (

    -- Forward fill without IGNORE NULLS (not portable): every observed value opens a new
    -- group, and the group's only non-NULL value is the last observation.
    select
        *,
        count(request_rate) over (
            partition by service
            order by ds
            rows between unbounded preceding and current row
        ) as fill_group
    from joined

),

final as (

    select
        service,
        ds,
        request_rate,
        cpu_cores,
        latency_ms,
        samples,
        is_gap,
        max(request_rate) over (partition by service, fill_group) as demand
    from filled

)

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
