{{ config(materialized='view') }}

{#-
    What the demand forecaster trains on: the gap-filled 5-minute demand per service with
    calendar features, lags at the seasonal periods (1 hour, 1 day, 1 week of 5-minute steps)
    and the service's tier and capacity. A view: always as fresh as the mart, costs nothing to
    build. Pin a training set to a DuckLake snapshot with AT (VERSION => n).
-#}

with

demand as (

    select service, ds, demand, request_rate, cpu_cores, latency_ms, is_gap
    from {{ ref('service_demand_5m') }}
    where demand is not null

),

services as (

    select service, tier, capacity_per_replica
    from {{ ref('services') }}

),

final as (

    select
        demand.service,
        demand.ds,
        demand.demand,
        demand.is_gap,
        demand.cpu_cores,
        demand.latency_ms,
        {{ scaleahead.hour_of_day('demand.ds') }} as hour_of_day,
        {{ scaleahead.day_of_week('demand.ds') }} as day_of_week,
        lag(demand.demand, 12) over (partition by demand.service order by demand.ds) as demand_lag_1h,
        lag(demand.demand, 288) over (partition by demand.service order by demand.ds) as demand_lag_1d,
        lag(demand.demand, 2016) over (partition by demand.service order by demand.ds) as demand_lag_7d,
        services.tier,
        services.capacity_per_replica
    from demand
    left join services
        on demand.service = services.service

)

select * from final
