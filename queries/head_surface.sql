-- head_surface: every surface statistic of every head (long format), for the attention explorer and head profiles
-- analysis: surface
-- params:
--   run_id  a finished surface run (default: the latest)
-- columns:
--   layer   1-based layer
--   head    1-based head within its layer
--   label   the paper's layer-head name
--   metric  the statistic (attn_cls, attn_sep, attn_prev, attn_next, entropy, ...)
--   value   its value for the head
with metric_rows as (
    select layer, head, metric, value from head_metrics where run_id = :run_id
),

final as (
    select layer + 1 as layer, head + 1 as head, (layer + 1) || '-' || (head + 1) as label, metric, value
    from metric_rows
)

select * from final order by layer, head, metric
