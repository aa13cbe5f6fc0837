{#-
    The increment an incremental model (re)builds: buckets with start in [var('start'), var('end')).

    scaleahead.transform.dbt passes the Airflow data interval widened to cover every row
    ingested since the last build (late data) and aligned to the 5-minute grid; a bare
    `dbt build` without vars rebuilds the whole history through the same merge. A first build
    or --full-refresh ignores the window and builds everything.
-#}

{% macro window_active() -%}
    {{ return(is_incremental() and var('start', none) is not none and var('end', none) is not none) }}
{%- endmacro %}

{% macro window_start() -%}
    cast('{{ var("start") }}' as {{ dbt.type_timestamp() }})
{%- endmacro %}

{% macro window_end() -%}
    cast('{{ var("end") }}' as {{ dbt.type_timestamp() }})
{%- endmacro %}

{#- A predicate keeping rows whose `column` falls inside the increment (true without one). -#}
{% macro in_window(column, lookback_minutes=0) -%}
    {%- if scaleahead.window_active() -%}
        {{ column }} >= {{ dbt.dateadd('minute', -lookback_minutes, scaleahead.window_start()) }}
        and {{ column }} < {{ scaleahead.window_end() }}
    {%- else -%}
        1 = 1
    {%- endif -%}
{%- endmacro %}

{#- incremental_predicates for delete+insert: only the increment's slice of the target is
    searched for keys to replace, so the delete prunes files/partitions by time. -#}
{% macro window_predicates(column) -%}
    {%- if var('start', none) is not none and var('end', none) is not none -%}
        {#- dbt-duckdb aliases the target DBT_INCREMENTAL_TARGET, dbt-core's default DBT_INTERNAL_DEST. -#}
        {%- set alias = 'DBT_INCREMENTAL_TARGET' if target.type == 'duckdb' else 'DBT_INTERNAL_DEST' -%}
        {{ return([alias ~ "." ~ column ~ " >= cast('" ~ var('start') ~ "' as " ~ dbt.type_timestamp() ~ ")"]) }}
    {%- else -%}
        {{ return([]) }}
    {%- endif -%}
{%- endmacro %}
