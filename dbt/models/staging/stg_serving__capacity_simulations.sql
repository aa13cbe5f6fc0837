with

source as (

    select * from {{ source('serving', 'capacity_simulations') }}

),

renamed as (

    select
        cast(run_id as {{ dbt.type_string() }}) as run_id,
        cast(as_of as {{ dbt.type_timestamp() }}) as as_of,
        cast(service as {{ dbt.type_string() }}) as service,
        cast(policy as {{ dbt.type_string() }}) as policy,
        cast(window_start as {{ dbt.type_timestamp() }}) as window_start,
        cast(replay_start as {{ dbt.type_timestamp() }}) as replay_start,
        cast(underprovisioned_minutes as {{ dbt.type_float() }}) as underprovisioned_minutes,
        cast(unserved_demand as {{ dbt.type_float() }}) as unserved_demand,
        cast(replica_hours as {{ dbt.type_float() }}) as replica_hours,
        cast(peak_replicas as {{ dbt.type_float() }}) as peak_replicas,
        cast(scaling_actions as {{ dbt.type_float() }}) as scaling_actions,
        cast(hpa_target as {{ dbt.type_float() }}) as hpa_target,
        cast(underprovisioned_vs_reactive as {{ dbt.type_float() }}) as underprovisioned_vs_reactive,
        cast(underprovisioned_vs_oracle as {{ dbt.type_float() }}) as underprovisioned_vs_oracle,
        cast(replica_hours_vs_reactive as {{ dbt.type_float() }}) as replica_hours_vs_reactive,
        cast(replica_hours_vs_oracle as {{ dbt.type_float() }}) as replica_hours_vs_oracle,
        cast(created_at as {{ dbt.type_timestamp() }}) as created_at
    from source

)

select * from renamed
