-- table2_coref: the paper's Table 2: antecedent selection accuracy of the baselines and of the best attention heads, by mention type
-- analysis: coref
-- params:
--   run_id  a finished coref run (default: the latest)
-- columns:
--   method         nearest / head_match / sieve (baselines), best head (best overall), best head: <type> (best for one type)
--   head           the attention head, the paper's 1-based layer-head name (head rows only)
--   all_types      accuracy over all scored mentions (percent)
--   pronoun        accuracy on pronoun mentions (percent)
--   proper         accuracy on proper-name mentions (percent)
--   nominal        accuracy on nominal mentions (percent)
--   mentions       mentions scored (every row scores the same mentions)
--   ci_low         95% Wilson interval of all_types, low end (percent)
--   ci_high        95% Wilson interval of all_types, high end (percent)
--   paper_all      the paper's accuracy for the method (BERT-base, CoNLL-2012)
--   paper_pronoun  the paper's pronoun accuracy
--   paper_proper   the paper's proper-name accuracy
--   paper_nominal  the paper's nominal accuracy
with scored as (
    select mention_id from coref_predictions where run_id = :run_id and layer = 0 and head = 0
),

typed as (
    select mentions.id as mention_id, mentions.mention_type
    from mentions
    join scored on scored.mention_id = mentions.id
),

baseline_scores as (
    select
        coref_baselines.baseline as method,
        avg(case when correct then 100.0 else 0.0 end) as all_types,
        avg(case when correct then 100.0 else 0.0 end) filter (where mention_type = 'pronoun') as pronoun,
        avg(case when correct then 100.0 else 0.0 end) filter (where mention_type = 'proper') as proper,
        avg(case when correct then 100.0 else 0.0 end) filter (where mention_type = 'nominal') as nominal,
        count(*) as mentions
    from coref_baselines
    join typed on typed.mention_id = coref_baselines.mention_id
    group by coref_baselines.baseline
),

head_scores as (
    select
        coref_predictions.layer,
        coref_predictions.head,
        avg(case when correct then 100.0 else 0.0 end) as all_types,
        avg(case when correct then 100.0 else 0.0 end) filter (where mention_type = 'pronoun') as pronoun,
        avg(case when correct then 100.0 else 0.0 end) filter (where mention_type = 'proper') as proper,
        avg(case when correct then 100.0 else 0.0 end) filter (where mention_type = 'nominal') as nominal,
        count(*) as mentions
    from coref_predictions
    join typed on typed.mention_id = coref_predictions.mention_id
    where coref_predictions.run_id = :run_id
    group by coref_predictions.layer, coref_predictions.head
),

ranked as (
    select
        *,
        row_number() over (order by all_types desc, layer, head) as rank_all,
        row_number() over (order by pronoun desc nulls last, layer, head) as rank_pronoun,
        row_number() over (order by proper desc nulls last, layer, head) as rank_proper,
        row_number() over (order by nominal desc nulls last, layer, head) as rank_nominal
    from head_scores
),

head_rows as (
    select 4 as sort_order, 'best head' as method, * from ranked where rank_all = 1
    union all
    select 5, 'best head: pronoun', * from ranked where rank_pronoun = 1
    union all
    select 6, 'best head: proper', * from ranked where rank_proper = 1
    union all
    select 7, 'best head: nominal', * from ranked where rank_nominal = 1
),

rows_ as (
    select paper_coref.sort_order, baseline_scores.method, null as head, all_types, pronoun, proper, nominal, mentions
    from baseline_scores
    left join paper_coref on paper_coref.method = baseline_scores.method
    union all
    select sort_order, method, (layer + 1) || '-' || (head + 1), all_types, pronoun, proper, nominal, mentions
    from head_rows
),

final as (
    select
        rows_.sort_order,
        rows_.method,
        rows_.head,
        rows_.all_types,
        rows_.pronoun,
        rows_.proper,
        rows_.nominal,
        rows_.mentions,
        rows_.all_types / 100 as p,
        rows_.mentions * 1.0 as n,
        paper_coref.paper_all,
        paper_coref.paper_pronoun,
        paper_coref.paper_proper,
        paper_coref.paper_nominal
    from rows_
    left join paper_coref on paper_coref.method = rows_.method
)

select
    method, head, all_types, pronoun, proper, nominal, mentions,
    100 * (p + 1.9208 / n - 1.96 * sqrt(p * (1 - p) / n + 0.9604 / (n * n))) / (1 + 3.8416 / n) as ci_low,
    100 * (p + 1.9208 / n + 1.96 * sqrt(p * (1 - p) / n + 0.9604 / (n * n))) / (1 + 3.8416 / n) as ci_high,
    paper_all, paper_pronoun, paper_proper, paper_nominal
from final
order by sort_order, method
