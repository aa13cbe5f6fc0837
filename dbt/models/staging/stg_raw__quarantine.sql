with

source as (

    select * from {{ source('raw', 'quarantine') }}

),

renamed as (

    select
        cast(batch_id as {{ dbt.type_string() }}) as batch_id,
        cast(path as {{ dbt.type_string() }}) as landing_path,
        cast(row_number as {{ dbt.type_bigint() }}) as row_number,
        cast(record as {{ dbt.type_string() }}) as record,
        cast(reason as {{ dbt.type_string() }}) as reason,
        cast(quarantined_at as {{ dbt.type_timestamp() }}) as quarantined_at,
        -- A NULL row number means the whole file was rejected, not one row.
        row_number is null as is_file_level
    from source

)

select * from renamed
