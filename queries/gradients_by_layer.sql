-- gradients_by_layer: mean |d loss / d attention| per layer and target kind (paper Figure 2, right), under the run's objective
-- analysis: gradients
-- params:
--   run_id  a finished gradients run (default: the latest, of the objective given)
--   objective  mlm (masked-LM loss) or contrastive (the sentence encoders' loss); picks the run when run_id is not given
-- columns:
--   objective   the loss differentiated: mlm or contrastive
--   layer       1-based layer
--   grad_cls    mean gradient magnitude of attention to [CLS]
--   grad_sep    ... to [SEP]
--   grad_punct  ... to periods and commas
--   grad_other  ... to all other tokens
with metrics as (
    select layer, metric, value from head_metrics where run_id = :run_id
),

variant as (
    select coalesce(run_variants.objective, 'mlm') as objective
    from runs left join run_variants on run_variants.run_id = runs.id
    where runs.id = :run_id
),

final as (
    select
        (select objective from variant) as objective,
        layer + 1 as layer,
        avg(value) filter (where metric = 'grad_cls') as grad_cls,
        avg(value) filter (where metric = 'grad_sep') as grad_sep,
        avg(value) filter (where metric = 'grad_punct') as grad_punct,
        avg(value) filter (where metric = 'grad_other') as grad_other
    from metrics
    group by layer
)

select * from final order by layer
