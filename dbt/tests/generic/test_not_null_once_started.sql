{#-
    Fails with the rows where column_name is NULL although started_by already had a non-NULL
    value earlier in (or at) the same partition: a forward fill must never fall back to NULL.
-#}
{% test not_null_once_started(model, column_name, partition_by, order_by, started_by) %}
    {%- set partition = partition_by | join(', ') -%}
    with observed as (
        select
            {{ column_name }} as checked_value,
            count({{ started_by }}) over (
                partition by {{ partition }}
                order by {{ order_by }}
                rows between unbounded preceding and current row
            ) as observations_so_far
        from {{ model }}
    )
    select *
    from observed
    where checked_value is null and observations_so_far > 0
{% endtest %}
