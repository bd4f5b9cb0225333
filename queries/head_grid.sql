-- head_grid: one per-head metric of a run as a layer x head grid (long format), for heatmaps and profiles
-- analysis: surface
-- params:
--   run_id  a finished run that stores head_metrics (surface or gradients; default: the latest surface run)
--   metric = entropy  the metric, e.g. entropy, attn_sep, attn_prev, grad_sep (see `select distinct metric from head_metrics`)
-- columns:
--   layer  1-based layer
--   head   1-based head within its layer
--   label  the paper's layer-head name
--   value  the metric's value
with metric_rows as (
    select layer, head, value from head_metrics where run_id = :run_id and metric = :metric
),

final as (
    select layer + 1 as layer, head + 1 as head, (layer + 1) || '-' || (head + 1) as label, value
    from metric_rows
)

select * from final order by layer, head
