{#- Fails with the rows whose value is below zero; NULLs are left to not_null. -#}
{% test not_negative(model, column_name) %}
    select *
    from {{ model }}
    where {{ column_name }} < 0
{% endtest %}
