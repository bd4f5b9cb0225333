-- surface_by_layer: per-layer means over heads of the surface statistics (paper Figures 2 and 4)
-- analysis: surface
-- params:
--   run_id  a finished surface run (default: the latest)
--   weighting  weight (attention weights, default) or norm (||alpha f(x)||, Kobayashi et al. 2020); picks the run when run_id is not given
-- columns:
--   layer            1-based layer, as in the paper
--   attn_prev        mean attention to the previous token
--   attn_self        mean attention to the token itself
--   attn_next        mean attention to the next token
--   attn_cls         mean attention to [CLS]
--   attn_sep         mean attention to [SEP] tokens
--   attn_period      mean attention to '.' tokens
--   attn_comma       mean attention to ',' tokens
--   sep_to_sep       mean attention from [SEP] to [SEP]
--   entropy          mean attention entropy (nats)
--   cls_entropy      mean entropy of [CLS]'s attention (nats)
--   uniform_entropy  entropy of uniform attention over the same tokens (nats)
with metrics as (
    select layer, metric, value
    from head_metrics
    where run_id = :run_id
),

final as (
    select
        layer + 1 as layer,
        avg(value) filter (where metric = 'attn_prev') as attn_prev,
        avg(value) filter (where metric = 'attn_self') as attn_self,
        avg(value) filter (where metric = 'attn_next') as attn_next,
        avg(value) filter (where metric = 'attn_cls') as attn_cls,
        avg(value) filter (where metric = 'attn_sep') as attn_sep,
        avg(value) filter (where metric = 'attn_period') as attn_period,
        avg(value) filter (where metric = 'attn_comma') as attn_comma,
        avg(value) filter (where metric = 'sep_to_sep') as sep_to_sep,
        avg(value) filter (where metric = 'entropy') as entropy,
        avg(value) filter (where metric = 'cls_entropy') as cls_entropy,
        avg(value) filter (where metric = 'uniform_entropy') as uniform_entropy
    from metrics
    group by layer
)

select * from final order by layer
