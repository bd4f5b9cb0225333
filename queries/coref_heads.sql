-- coref_heads: every head's antecedent selection accuracy per mention type, with a 95% Wilson interval
-- analysis: coref
-- params:
--   run_id  a finished coref run (default: the latest)
--   top_k = 10  heads listed per mention type, best first
-- columns:
--   mention_type  pronoun / proper / nominal, or all
--   rank          1 = the best head for the type
--   head          the attention head, the paper's 1-based layer-head name
--   correct       mentions whose chosen antecedent is of the same entity
--   total         mentions scored
--   accuracy      correct / total (percent)
--   ci_low        95% Wilson interval, low end (percent)
--   ci_high       95% Wilson interval, high end (percent)
with scored as (
    select coref_predictions.layer, coref_predictions.head, mentions.mention_type, coref_predictions.correct
    from coref_predictions
    join mentions on mentions.id = coref_predictions.mention_id
    where coref_predictions.run_id = :run_id
),

by_type as (
    select layer, head, mention_type, count(*) filter (where correct) as correct, count(*) as total
    from scored
    group by layer, head, mention_type
    union all
    select layer, head, 'all', count(*) filter (where correct), count(*)
    from scored
    group by layer, head
),

ranked as (
    select
        *,
        correct * 1.0 / total as p,
        total * 1.0 as n,
        row_number() over (partition by mention_type order by correct * 1.0 / total desc, layer, head) as rank
    from by_type
),

final as (
    select
        mention_type,
        rank,
        (layer + 1) || '-' || (head + 1) as head,
        correct,
        total,
        100 * p as accuracy,
        100 * (p + 1.9208 / n - 1.96 * sqrt(p * (1 - p) / n + 0.9604 / (n * n))) / (1 + 3.8416 / n) as ci_low,
        100 * (p + 1.9208 / n + 1.96 * sqrt(p * (1 - p) / n + 0.9604 / (n * n))) / (1 + 3.8416 / n) as ci_high
    from ranked
    where rank <= :top_k
)

select * from final order by mention_type = 'all' desc, mention_type, rank
