with

source as (

    select * from {{ source('serving', 'forecasts') }}

)

select
    cast(batch_id as {{ dbt.type_string() }}) as batch_id,
    cast(service as {{ dbt.type_string() }}) as service,
    cast(metric as {{ dbt.type_string() }}) as metric,
    cast(ds as {{ dbt.type_timestamp() }}) as ds,
    cast(step as {{ dbt.type_int() }}) as step,
    cast(p50 as {{ dbt.type_float() }}) as p50,
    cast(p90 as {{ dbt.type_float() }}) as p90,
    cast(p95 as {{ dbt.type_float() }}) as p95,
    cast(model_name as {{ dbt.type_string() }}) as model_name,
    cast(model_version as {{ dbt.type_string() }}) as model_version,
    cast(created_at as {{ dbt.type_timestamp() }}) as created_at
from source
