{#-
    A regular time grid per partition: one row per (partition columns..., ds) from each
    partition's first to last bucket inclusive.

    bounds        name of a CTE/relation holding the partition columns plus start/end columns
    partition_by  list of partition column names
    start_col     first bucket start (already aligned to the grid)
    end_col       last bucket start (already aligned to the grid)
    minutes       grid step
    max_steps     upper bound on buckets per partition for adapters without a native series
                  generator (default: one year of 5-minute buckets)
-#}
{% macro time_grid(bounds, partition_by, start_col, end_col, minutes, max_steps=105408) -%}
    {{ return(adapter.dispatch('time_grid', 'scaleahead')(bounds, partition_by, start_col, end_col, minutes, max_steps)) }}
{%- endmacro %}

{% macro default__time_grid(bounds, partition_by, start_col, end_col, minutes, max_steps) -%}
    select
        {% for col in partition_by %}b.{{ col }},{% endfor %}
        {{ dbt.dateadd('minute', '(s.generated_number - 1) * ' ~ minutes, 'b.' ~ start_col) }} as ds
    from {{ bounds }} as b
    inner join ({{ dbt.generate_series(max_steps) }}) as s
        on (s.generated_number - 1) * {{ minutes }}
            <= {{ dbt.datediff('b.' ~ start_col, 'b.' ~ end_col, 'minute') }}
{%- endmacro %}

{% macro duckdb__time_grid(bounds, partition_by, start_col, end_col, minutes, max_steps) -%}
    {#- Native generator: no upper bound on the series length. -#}
    select
        {% for col in partition_by %}b.{{ col }},{% endfor %}
        unnest(generate_series(b.{{ start_col }}, b.{{ end_col }}, interval '{{ minutes }} minutes')) as ds
    from {{ bounds }} as b
{%- endmacro %}
