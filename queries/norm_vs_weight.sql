-- norm_vs_weight: per layer, attention to [CLS], [SEP] and neighbours under attention weights and under norm-based maps (Kobayashi et al. 2020), same model and corpus
-- params:
--   model  an encoder with finished surface runs of both weightings (headlens analyze surface --weighting weight,norm)
-- columns:
--   corpus           corpus of the two runs
--   layer            1-based layer
--   cls_weight       mean attention weight on [CLS]
--   cls_norm         mean share of ||alpha f(x)|| on [CLS]
--   sep_weight       mean attention weight on [SEP] tokens
--   sep_norm         mean share of ||alpha f(x)|| on [SEP] tokens
--   prev_weight      mean attention weight on the previous token
--   prev_norm        mean share of ||alpha f(x)|| on the previous token
--   entropy_weight   mean entropy (nats) of the weights
--   entropy_norm     mean entropy (nats) of the norm shares
with surface_runs as (
    select runs.id as run_id, runs.corpus_id, coalesce(run_variants.weighting, 'weight') as weighting,
           row_number() over (partition by runs.corpus_id, coalesce(run_variants.weighting, 'weight') order by runs.finished_at desc, runs.id desc) as recency
    from runs
    left join run_variants on run_variants.run_id = runs.id
    join encoders on encoders.id = runs.encoder_id
    where encoders.name = :model and runs.analysis = 'surface' and runs.status = 'done'
),

pairs as (
    select weight_run.corpus_id, weight_run.run_id as weight_id, norm_run.run_id as norm_id
    from surface_runs as weight_run
    join surface_runs as norm_run on norm_run.corpus_id = weight_run.corpus_id
    where weight_run.weighting = 'weight' and weight_run.recency = 1
        and norm_run.weighting = 'norm' and norm_run.recency = 1
),

by_layer as (
    select pairs.corpus_id, head_metrics.layer, head_metrics.metric,
           avg(head_metrics.value) filter (where head_metrics.run_id = pairs.weight_id) as by_weight,
           avg(head_metrics.value) filter (where head_metrics.run_id = pairs.norm_id) as by_norm
    from pairs
    join head_metrics on head_metrics.run_id in (pairs.weight_id, pairs.norm_id)
    where head_metrics.metric in ('attn_cls', 'attn_sep', 'attn_prev', 'entropy')
    group by pairs.corpus_id, head_metrics.layer, head_metrics.metric
),

final as (
    select
        corpora.name as corpus,
        by_layer.layer + 1 as layer,
        max(by_weight) filter (where metric = 'attn_cls') as cls_weight,
        max(by_norm) filter (where metric = 'attn_cls') as cls_norm,
        max(by_weight) filter (where metric = 'attn_sep') as sep_weight,
        max(by_norm) filter (where metric = 'attn_sep') as sep_norm,
        max(by_weight) filter (where metric = 'attn_prev') as prev_weight,
        max(by_norm) filter (where metric = 'attn_prev') as prev_norm,
        max(by_weight) filter (where metric = 'entropy') as entropy_weight,
        max(by_norm) filter (where metric = 'entropy') as entropy_norm
    from by_layer
    join corpora on corpora.id = by_layer.corpus_id
    group by corpora.name, by_layer.layer
)

select * from final order by corpus, layer
