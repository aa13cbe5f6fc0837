with

source as (

    select * from {{ source('raw', 'service_catalog') }}

),

renamed as (

    select
        cast(service as {{ dbt.type_string() }}) as service,
        cast(lower(tier) as {{ dbt.type_string() }}) as tier,
        cast(capacity_per_replica as {{ dbt.type_float() }}) as capacity_per_replica,
        cast(min_replicas as {{ dbt.type_int() }}) as min_replicas,
        cast(max_replicas as {{ dbt.type_int() }}) as max_replicas,
        cast(source_file as {{ dbt.type_string() }}) as source_file,
        cast(updated_at as {{ dbt.type_timestamp() }}) as updated_at
    from source

),

ranked as (

    -- Last write wins per service (a later catalog file overrides an earlier one).
    select
        *,
        row_number() over (
            partition by service
            order by updated_at desc, source_file desc
        ) as write_rank
    from renamed

)

select
    service,
    tier,
    capacity_per_replica,
    min_replicas,
    max_replicas,
    source_file,
    updated_at
from ranked
where write_rank = 1
