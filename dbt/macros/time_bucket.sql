{#-
    Start of the fixed-width bucket containing a timestamp, aligned to the Unix epoch so that
    every series (and every adapter) shares the same grid.
-#}
{% macro time_bucket(ts, minutes) -%}
    {{ return(adapter.dispatch('time_bucket', 'scaleahead')(ts, minutes)) }}
{%- endmacro %}

{% macro default__time_bucket(ts, minutes) -%}
    {%- set epoch = "cast('1970-01-01 00:00:00' as " ~ dbt.type_timestamp() ~ ")" -%}
    {{ dbt.dateadd(
        'minute',
        'cast(floor(' ~ dbt.datediff(epoch, dbt.date_trunc('minute', ts), 'minute') ~ ' / ' ~ minutes ~ ') as ' ~ dbt.type_bigint() ~ ') * ' ~ minutes,
        epoch
    ) }}
{%- endmacro %}

{% macro duckdb__time_bucket(ts, minutes) -%}
    {#- time_bucket's default origin (2000-01-03) is a multiple of any minute width < 1 day. -#}
    time_bucket(interval '{{ minutes }} minutes', {{ ts }})
{%- endmacro %}

{% macro snowflake__time_bucket(ts, minutes) -%}
    time_slice({{ ts }}, {{ minutes }}, 'MINUTE', 'START')
{%- endmacro %}
