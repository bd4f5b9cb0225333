-- surface_heads: heads with a clear surface pattern (previous/next token over a threshold, most [SEP]/[CLS]/punctuation)
-- analysis: surface
-- params:
--   run_id  a finished surface run (default: the latest)
--   weighting  weight (attention weights, default) or norm (||alpha f(x)||, Kobayashi et al. 2020); picks the run when run_id is not given
--   threshold = 0.5  attention share that makes a positional head (the paper's 50%)
--   top_k = 5  heads listed for each special-token pattern, by share
-- columns:
--   pattern  previous token / next token / [SEP] / [CLS] / punctuation
--   head     the paper's 1-based layer-head name
--   share    mean attention share of that pattern
--   entropy  mean attention entropy of the head (nats)
with grid as (
    select
        layer,
        head,
        (layer + 1) || '-' || (head + 1) as label,
        attn_prev,
        attn_next,
        attn_sep,
        attn_cls,
        attn_period + attn_comma as attn_punct,
        entropy
    from head_surface
    where run_id = :run_id
),

ranked as (
    select
        *,
        row_number() over (order by attn_sep desc, layer, head) as sep_rank,
        row_number() over (order by attn_cls desc, layer, head) as cls_rank,
        row_number() over (order by attn_punct desc, layer, head) as punct_rank
    from grid
),

patterns as (
    select 1 as sort_key, 'previous token' as pattern, layer, head, label, attn_prev as share, entropy
    from ranked where attn_prev > :threshold
    union all
    select 2, 'next token', layer, head, label, attn_next, entropy
    from ranked where attn_next > :threshold
    union all
    select 3, '[SEP]', layer, head, label, attn_sep, entropy
    from ranked where sep_rank <= :top_k
    union all
    select 4, '[CLS]', layer, head, label, attn_cls, entropy
    from ranked where cls_rank <= :top_k
    union all
    select 5, 'punctuation', layer, head, label, attn_punct, entropy
    from ranked where punct_rank <= :top_k
),

final as (
    select pattern, label as head, share, entropy, sort_key
    from patterns
)

select pattern, head, share, entropy from final order by sort_key, share desc, head
