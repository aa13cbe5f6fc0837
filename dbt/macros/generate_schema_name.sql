{#-
    Use a model's custom schema verbatim (staging, intermediate, marts) instead of dbt's
    default "<target_schema>_<custom>" so that Python readers and the contracts can name
    tables like marts.service_demand_5m regardless of the target.
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
