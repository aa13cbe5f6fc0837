{#-
    The service dimension: one row per observed service. Catalog values (raw.service_catalog,
    last write wins) where present; otherwise the tier's defaults (seed tier_defaults) and a
    capacity per replica derived from observed demand, so that the recent peak (7 days before
    the service's last sample) needs about `replicas_at_peak` replicas at the target utilization.
-#}

{%- set default_tier = 'standard' -%}
{%- set replicas_at_peak = 10 -%}

with

observed as (

    select service, max(last_ts) as last_ts
    from {{ ref('int_telemetry_series') }}
    group by service

),

recent_peak as (

    select demand.service, max(demand.demand) as peak_demand
    from {{ ref('service_demand_5m') }} as demand
    inner join observed
        on demand.service = observed.service
    where demand.ds >= {{ dbt.dateadd('day', -7, 'observed.last_ts') }}
    group by demand.service

),

catalog as (

    select * from {{ ref('stg_raw__service_catalog') }}

),

tier_defaults as (

    select * from {{ ref('tier_defaults') }}

),

resolved as (

    select
        observed.service,
        coalesce(catalog.tier, '{{ default_tier }}') as tier,
        catalog.capacity_per_replica as catalog_capacity,
        recent_peak.peak_demand,
        catalog.min_replicas as catalog_min_replicas,
        catalog.max_replicas as catalog_max_replicas
    from observed
    left join catalog
        on observed.service = catalog.service
    left join recent_peak
        on observed.service = recent_peak.service

),

final as (

    select
        resolved.service,
        resolved.tier,
        cast(coalesce(
            resolved.catalog_capacity,
            case
                when resolved.peak_demand > 0
                    then resolved.peak_demand / ({{ replicas_at_peak }} * coalesce(tier_row.target_utilization, fallback.target_utilization))
                else 1.0
            end
        ) as {{ dbt.type_float() }}) as capacity_per_replica,
        cast(coalesce(tier_row.target_utilization, fallback.target_utilization) as {{ dbt.type_float() }}) as target_utilization,
        cast(coalesce(resolved.catalog_min_replicas, coalesce(tier_row.min_replicas, fallback.min_replicas)) as {{ dbt.type_int() }}) as min_replicas,
        cast(coalesce(resolved.catalog_max_replicas, coalesce(tier_row.max_replicas, fallback.max_replicas)) as {{ dbt.type_int() }}) as max_replicas,
        case
            when resolved.catalog_capacity is not null then 'catalog'
            else 'derived_from_demand'
        end as capacity_source
    from resolved
    left join tier_defaults as tier_row
        on resolved.tier = tier_row.tier
    -- A tier missing from the seed gets the default tier's values.
    cross join (
        select * from tier_defaults where tier = '{{ default_tier }}'
    ) as fallback

)

select * from final
