{#- Hour of day (0-23) and ISO day of week (1 = Monday .. 7 = Sunday), portable. -#}
{% macro hour_of_day(ts) -%}
    {{ return(adapter.dispatch('hour_of_day', 'scaleahead')(ts)) }}
{%- endmacro %}

{% macro default__hour_of_day(ts) -%}
    cast(extract(hour from {{ ts }}) as {{ dbt.type_int() }})
{%- endmacro %}

{% macro day_of_week(ts) -%}
    {{ return(adapter.dispatch('day_of_week', 'scaleahead')(ts)) }}
{%- endmacro %}

{% macro default__day_of_week(ts) -%}
    cast(extract(isodow from {{ ts }}) as {{ dbt.type_int() }})
{%- endmacro %}

{% macro snowflake__day_of_week(ts) -%}
    {#- DAYOFWEEKISO does not depend on the WEEK_START session parameter. -#}
    cast(dayofweekiso({{ ts }}) as {{ dbt.type_int() }})
{%- endmacro %}
