-- compare_heads: two encoders of the same shape compared head by head: per surface metric, the correlation of the two models' per-head values and the mean absolute difference
-- params:
--   model_a = minilm  the first encoder
--   model_b = minilm-random  the second encoder (same number of layers and heads, e.g. cased vs uncased)
--   corpus = wiki-segments  the corpus both ran the surface analysis on (the latest run of each is used)
-- columns:
--   metric         surface metric
--   heads          heads compared (0 when the shapes differ: use compare_models)
--   correlation    Pearson correlation over heads of the two models' values
--   mean_abs_diff  mean over heads of |value_b - value_a|
--   largest_diff   the head (1-based layer-head) where the two differ most
with latest as (
    select latest_runs.model, latest_runs.run_id, encoders.n_layers
    from latest_runs
    join encoders on encoders.id = latest_runs.encoder_id
    where latest_runs.analysis = 'surface' and latest_runs.corpus = :corpus
        and latest_runs.model in (:model_a, :model_b)
),

values_ as (
    select latest.model, head_metrics.layer, head_metrics.head, head_metrics.metric, head_metrics.value
    from head_metrics
    join latest on latest.run_id = head_metrics.run_id
),

pairs as (
    select a.metric, a.layer, a.head, a.value as value_a, b.value as value_b
    from values_ as a
    join values_ as b on b.metric = a.metric and b.layer = a.layer and b.head = a.head
    where a.model = :model_a and b.model = :model_b
),

ranked as (
    select *, row_number() over (partition by metric order by abs(value_b - value_a) desc, layer, head) as rank
    from pairs
),

final as (
    select
        metric,
        count(*) as heads,
        corr(value_a, value_b) as correlation,
        avg(abs(value_b - value_a)) as mean_abs_diff,
        max(case when rank = 1 then (layer + 1) || '-' || (head + 1) end) as largest_diff
    from ranked
    group by metric
)

select * from final order by metric
