-- gradients_by_layer: mean |d masked-LM loss / d attention| per layer and target kind (paper Figure 2, right)
-- analysis: gradients
-- params:
--   run_id  a finished gradients run (default: the latest)
-- columns:
--   layer       1-based layer
--   grad_cls    mean gradient magnitude of attention to [CLS]
--   grad_sep    ... to [SEP]
--   grad_punct  ... to periods and commas
--   grad_other  ... to all other tokens
with metrics as (
    select layer, metric, value from head_metrics where run_id = :run_id
),

final as (
    select
        layer + 1 as layer,
        avg(value) filter (where metric = 'grad_cls') as grad_cls,
        avg(value) filter (where metric = 'grad_sep') as grad_sep,
        avg(value) filter (where metric = 'grad_punct') as grad_punct,
        avg(value) filter (where metric = 'grad_other') as grad_other
    from metrics
    group by layer
)

select * from final order by layer
