{#-
    Fails for every partition whose buckets are not a gap-free regular grid: the number of
    rows must equal the number of steps between the first and last bucket plus one.
-#}
{% test regular_grid(model, column_name, partition_by, minutes) %}
    {%- set partition = partition_by | join(', ') -%}
    select {{ partition }}, count(*) as n_rows, min({{ column_name }}) as first_ds, max({{ column_name }}) as last_ds
    from {{ model }}
    group by {{ partition }}
    having count(*) <> {{ dbt.datediff('min(' ~ column_name ~ ')', 'max(' ~ column_name ~ ')', 'minute') }} / {{ minutes }} + 1
        or count(distinct {{ column_name }}) <> count(*)
{% endtest %}
