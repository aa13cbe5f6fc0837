{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['service', 'metric', 'ds'],
        incremental_predicates=scaleahead.window_predicates('ds'),
    )
}}

{%- set bucket_minutes = 1 -%}

with

telemetry as (

    select
        service,
        metric,
        {{ scaleahead.time_bucket('ts', bucket_minutes) }} as ds,
        value
    from {{ ref('stg_raw__telemetry') }}
    where {{ scaleahead.in_window('ts') }}

),

aggregated as (

    select
        service,
        metric,
        ds,
        avg(value) as value,
        count(*) as samples
    from telemetry
    group by service, metric, ds

),

series_bounds as (

    -- Each series' grid runs from its first to its last minute; an increment only covers the
    -- part of it inside the window.
    select
        service,
        metric,
        {% if scaleahead.window_active() -%}
        case
            when {{ scaleahead.time_bucket('first_ts', bucket_minutes) }} > {{ scaleahead.window_start() }}
                then {{ scaleahead.time_bucket('first_ts', bucket_minutes) }}
            else {{ scaleahead.window_start() }}
        end as first_ds,
        case
            when {{ scaleahead.time_bucket('last_ts', bucket_minutes) }} < {{ dbt.dateadd('minute', -bucket_minutes, scaleahead.window_end()) }}
                then {{ scaleahead.time_bucket('last_ts', bucket_minutes) }}
            else {{ dbt.dateadd('minute', -bucket_minutes, scaleahead.window_end()) }}
        end as last_ds
        {%- else -%}
        {{ scaleahead.time_bucket('first_ts', bucket_minutes) }} as first_ds,
        {{ scaleahead.time_bucket('last_ts', bucket_minutes) }} as last_ds
        {%- endif %}
    from {{ ref('int_telemetry_series') }}
    {% if scaleahead.window_active() -%}
    where last_ts >= {{ scaleahead.window_start() }}
        and first_ts < {{ scaleahead.window_end() }}
    {%- endif %}

),

grid as (

    {{ scaleahead.time_grid('series_bounds', ['service', 'metric'], 'first_ds', 'last_ds', bucket_minutes) }}

),

final as (

    -- Missing minutes stay visible as explicit gaps instead of silently disappearing.
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

-- Written in time order: each Parquet file/row group then covers a narrow ds range, so an
-- increment's reads, delete+insert and window-restricted tests skip the history on the
-- files' min/max statistics (an unordered full build spans all of history in every file).
select * from final
order by ds
