with

source as (

    select * from {{ source('serving', 'scaling_modes') }}

),

renamed as (

    select
        cast(run_id as {{ dbt.type_string() }}) as run_id,
        cast(as_of as {{ dbt.type_timestamp() }}) as as_of,
        cast(service as {{ dbt.type_string() }}) as service,
        cast(mode as {{ dbt.type_string() }}) as mode,
        cast(previous_mode as {{ dbt.type_string() }}) as previous_mode,
        cast(changed as {{ dbt.type_boolean() }}) as changed,
        cast(reason as {{ dbt.type_string() }}) as reason,
        cast(window_start as {{ dbt.type_timestamp() }}) as window_start,
        cast(window_end as {{ dbt.type_timestamp() }}) as window_end,
        cast(evidence_days as {{ dbt.type_float() }}) as evidence_days,
        cast(predictive_under_min as {{ dbt.type_float() }}) as predictive_under_min,
        cast(matched_under_min as {{ dbt.type_float() }}) as matched_under_min,
        cast(ratio as {{ dbt.type_float() }}) as ratio,
        cast(incidents as {{ dbt.type_int() }}) as incidents,
        cast(shadow_days as {{ dbt.type_float() }}) as shadow_days,
        cast(minutes_saved as {{ dbt.type_float() }}) as minutes_saved,
        cast(extra_replica_hours as {{ dbt.type_float() }}) as extra_replica_hours,
        cast(created_at as {{ dbt.type_timestamp() }}) as created_at
    from source

)

select * from renamed
