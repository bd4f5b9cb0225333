-- compare_models: two encoders' surface statistics side by side, layer by layer at the same relative depth
-- params:
--   model_a = minilm  the first encoder
--   model_b = minilm-random  the second encoder
--   corpus = wiki-segments  the corpus both ran the surface analysis on (the latest run of each is used)
-- columns:
--   metric    surface metric (see surface_by_layer)
--   depth     relative depth of model A's layer, (layer - 0.5) / layers
--   layer_a   1-based layer of model A
--   layer_b   1-based layer of model B at the nearest relative depth
--   value_a   model A's mean over heads
--   value_b   model B's mean over heads
--   diff      value_b - value_a
with latest as (
    select latest_runs.model, latest_runs.run_id, encoders.n_layers
    from latest_runs
    join encoders on encoders.id = latest_runs.encoder_id
    where latest_runs.analysis = 'surface' and latest_runs.corpus = :corpus
        and latest_runs.model in (:model_a, :model_b)
),

layer_means as (
    select latest.model, latest.n_layers, head_metrics.layer, head_metrics.metric, avg(head_metrics.value) as value
    from head_metrics
    join latest on latest.run_id = head_metrics.run_id
    group by latest.model, latest.n_layers, head_metrics.layer, head_metrics.metric
),

a as (select * from layer_means where model = :model_a),

b as (select * from layer_means where model = :model_b),

matched as (
    select
        a.metric,
        (a.layer + 0.5) / a.n_layers as depth,
        a.layer as layer_a,
        cast(floor((a.layer + 0.5) * b.n_layers / a.n_layers) as integer) as layer_b,
        a.value as value_a
    from a
    join (select distinct n_layers from b) as b on true
),

final as (
    select matched.metric, matched.depth, matched.layer_a + 1 as layer_a, matched.layer_b + 1 as layer_b,
           matched.value_a, b.value as value_b, b.value - matched.value_a as diff
    from matched
    join b on b.metric = matched.metric and b.layer = matched.layer_b
)

select * from final order by metric, layer_a
