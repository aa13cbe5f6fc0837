with

source as (

    select * from {{ source('raw', 'ingest_batches') }}

),

renamed as (

    select
        cast(batch_id as {{ dbt.type_string() }}) as batch_id,
        cast(source as {{ dbt.type_string() }}) as batch_source,
        cast(path as {{ dbt.type_string() }}) as landing_path,
        cast(content_hash as {{ dbt.type_string() }}) as content_hash,
        cast(status as {{ dbt.type_string() }}) as status,
        cast(rows_read as {{ dbt.type_bigint() }}) as rows_read,
        cast(rows_loaded as {{ dbt.type_bigint() }}) as rows_loaded,
        cast(rows_quarantined as {{ dbt.type_bigint() }}) as rows_quarantined,
        cast(rows_duplicate as {{ dbt.type_bigint() }}) as rows_duplicate,
        cast(error as {{ dbt.type_string() }}) as error_message,
        cast(started_at as {{ dbt.type_timestamp() }}) as started_at,
        cast(finished_at as {{ dbt.type_timestamp() }}) as finished_at
    from source

)

select * from renamed
