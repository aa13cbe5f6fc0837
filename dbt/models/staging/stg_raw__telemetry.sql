with

source as (

    select * from {{ source('raw', 'telemetry') }}

),

renamed as (

    select
        cast(service as {{ dbt.type_string() }}) as service,
        cast(metric as {{ dbt.type_string() }}) as metric,
        cast(ts as {{ dbt.type_timestamp() }}) as ts,
        cast(value as {{ dbt.type_float() }}) as value,
        coalesce(cast(labels as {{ dbt.type_string() }}), '{}') as labels,
        cast(batch_id as {{ dbt.type_string() }}) as batch_id,
        cast(ingested_at as {{ dbt.type_timestamp() }}) as ingested_at
    from source

),

ranked as (

    -- Re-deliveries are corrections: the latest ingested copy of a sample wins. batch_id
    -- and value only break exact ties so the choice is deterministic.
    select
        *,
        row_number() over (
            partition by service, metric, ts, labels
            order by ingested_at desc, batch_id desc, value desc
        ) as delivery_rank
    from renamed

)

select
    service,
    metric,
    ts,
    value,
    labels,
    batch_id,
    ingested_at
from ranked
where delivery_rank = 1
