{%- set bucket_minutes = 5 -%}

with

telemetry as (

    select service, metric, ts, value from {{ ref('stg_raw__telemetry') }}

),

bucketed as (

    select
        service,
        metric,
        {{ scaleahead.time_bucket('ts', bucket_minutes) }} as ds,
        value
    from telemetry

),

aggregated as (

    select
        service,
        metric,
        ds,
        avg(value) as value,
        count(*) as samples
    from bucketed
    group by service, metric, ds

),

series_bounds as (

    select
        service,
        metric,
        min(ds) as first_ds,
        max(ds) as last_ds
    from aggregated
    group by service, metric

),

grid as (

    {{ scaleahead.time_grid('series_bounds', ['service', 'metric'], 'first_ds', 'last_ds', bucket_minutes) }}

),

final as (

    -- Missing buckets stay visible as explicit gaps instead of silently disappearing.
    select
        grid.service,
        grid.metric,
        grid.ds,
        aggregated.value,
        cast(coalesce(aggregated.samples, 0) as {{ dbt.type_bigint() }}) as samples,
        aggregated.ds is null as is_gap
    from grid
    left join aggregated
        on grid.service = aggregated.service
        and grid.metric = aggregated.metric
        and grid.ds = aggregated.ds

)

select * from final
