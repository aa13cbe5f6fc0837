-- Anomaly alert lifecycle for analysts and dashboards: one row per alert (latest state),
-- over serving.alerts written by the anomaly stage (scaleahead.anomaly.stage).

with

latest as (

    select *
    from {{ source('serving', 'alerts') }}
    qualify row_number() over (partition by alert_id order by updated_at desc) = 1

)

select
    alert_id,
    service,
    metric,
    kind,
    severity,
    status,
    status = 'firing' as is_firing,
    starts_at,
    ends_at,
    date_diff('minute', starts_at, coalesce(ends_at, updated_at)) as duration_minutes,
    observed,
    expected,
    case when expected is not null and expected <> 0 then observed / expected end as observed_ratio,
    score,
    reason,
    updated_at
from latest
