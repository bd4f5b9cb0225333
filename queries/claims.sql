-- claims: the paper's findings as checks on one encoder's latest weight-based runs: held or not, the number behind each, its 95% interval
-- params:
--   model = minilm  the encoder to check
--   random_model = minilm-random  its randomly initialised copy (the probes' control)
--   annotation = gold  dependency layer the syntax claims are scored against
--   min_arcs = 100  relations with fewer arcs are left out (the paper's cut-off)
-- columns:
--   claim      short name of the finding
--   kind       surface (attention patterns), linguistic (heads or probes recover syntax / coreference), negative (a limit the paper found)
--   statement  the finding, as a check (middle layers = every layer but the first and the last)
--   held       true or false; NULL when a run it needs is missing
--   value      the number behind it (percent or percentage points; a ratio for clustering)
--   ci_low     95% interval, low end (Wilson, around an accuracy or share of a count); NULL where none applies
--   ci_high    95% interval, high end
--   threshold  what value must exceed (must stay under, for negative claims and clustering)
--   detail     where the number comes from (head, relation, probe)
with model_runs as (
    select runs.id as run_id, runs.analysis, runs.corpus_id,
           row_number() over (partition by runs.analysis order by runs.finished_at desc, runs.id desc) as recency
    from runs
    left join run_variants on run_variants.run_id = runs.id
    join encoders on encoders.id = runs.encoder_id
    where encoders.name = :model and runs.status = 'done' and coalesce(run_variants.weighting, 'weight') = 'weight'
),

latest as (
    select analysis, run_id, corpus_id from model_runs where recency = 1
),

n_layers as (
    select n_layers from encoders where name = :model
),

-- Surface: special-token sinks in the middle layers (paper §3, Fig. 2).
middle_heads as (
    select
        head_metrics.layer, head_metrics.head,
        100 * sum(case when head_metrics.metric = 'attn_sep' then head_metrics.value else 0 end) as to_sep,
        100 * sum(case when head_metrics.metric in ('attn_sep', 'attn_cls') then head_metrics.value else 0 end) as to_special
    from head_metrics
    join latest on latest.run_id = head_metrics.run_id and latest.analysis = 'surface'
    where head_metrics.layer > 0 and head_metrics.layer < (select n_layers from n_layers) - 1
    group by head_metrics.layer, head_metrics.head
),

sep_sink as (
    select 'sep_sink' as claim, to_sep as value, cast(null as double precision) as ci_low, cast(null as double precision) as ci_high,
           'head ' || (layer + 1) || '-' || (head + 1) as detail
    from (select *, row_number() over (order by to_sep desc, layer, head) as rank from middle_heads) as ranked
    where rank = 1
),

special_sink as (
    select 'special_sink' as claim, to_special as value, cast(null as double precision) as ci_low, cast(null as double precision) as ci_high,
           'head ' || (layer + 1) || '-' || (head + 1) || ' ([CLS] + [SEP])' as detail
    from (select *, row_number() over (order by to_special desc, layer, head) as rank from middle_heads) as ranked
    where rank = 1
),

-- Syntax (paper §4.2, Table 1).
scores as (
    select arc_scores.paper_relation as relation, arc_scores.layer, arc_scores.head, arc_scores.direction,
           sum(arc_scores.correct) as correct, sum(arc_scores.n) as n
    from arc_scores
    join latest on latest.run_id = arc_scores.run_id and latest.analysis = 'syntax'
    where arc_scores.annotation = :annotation and arc_scores.paper_relation is not null
    group by arc_scores.paper_relation, arc_scores.layer, arc_scores.head, arc_scores.direction
    union all
    select 'all', arc_scores.layer, arc_scores.head, arc_scores.direction, sum(arc_scores.correct), sum(arc_scores.n)
    from arc_scores
    join latest on latest.run_id = arc_scores.run_id and latest.analysis = 'syntax'
    where arc_scores.annotation = :annotation and arc_scores.label <> 'punct'
    group by arc_scores.layer, arc_scores.head, arc_scores.direction
),

best_by_direction as (
    select relation, direction, max(correct * 1.0 / n) as accuracy, max(n) as n
    from scores
    group by relation, direction
),

direction_votes as (
    select d2h.relation, case when d2h.accuracy > max(other.accuracy) then 1 else 0 end as d2h_wins
    from best_by_direction as d2h
    join best_by_direction as other on other.relation = d2h.relation and other.direction <> 'd2h'
    where d2h.direction = 'd2h' and d2h.relation <> 'all' and d2h.n >= :min_arcs
    group by d2h.relation, d2h.accuracy
),

direction_share as (
    select sum(d2h_wins) * 1.0 / count(*) as p, count(*) * 1.0 as n_real, sum(d2h_wins) as wins, count(*) as relations
    from direction_votes
),

direction as (
    select 'dependent_to_head' as claim, 100 * p as value,
           100 * (p + 1.9208 / n_real - 1.96 * sqrt(p * (1 - p) / n_real + 0.9604 / (n_real * n_real))) / (1 + 3.8416 / n_real) as ci_low,
           100 * (p + 1.9208 / n_real + 1.96 * sqrt(p * (1 - p) / n_real + 0.9604 / (n_real * n_real))) / (1 + 3.8416 / n_real) as ci_high,
           wins || ' of ' || relations || ' relations' as detail
    from direction_share
    where relations > 0
),

best_head as (
    select relation, layer, head, direction, correct * 1.0 / n as p, n * 1.0 as n_real, n,
           row_number() over (partition by relation order by correct * 1.0 / n desc, layer, head, direction) as rank
    from scores
),

analysed as (
    select head_predictions.segment_id
    from head_predictions
    join latest on latest.run_id = head_predictions.run_id and latest.analysis = 'syntax'
    where head_predictions.layer = 0 and head_predictions.head = 0
),

labelled_arcs as (
    select dependencies.word_index as dependent, dependencies.head_index as head_word, relation_map.relation
    from dependencies
    join annotation_layers on annotation_layers.id = dependencies.layer_id
    join latest on latest.corpus_id = annotation_layers.corpus_id and latest.analysis = 'syntax'
    join relation_map on relation_map.scheme = annotation_layers.scheme and relation_map.label = dependencies.relation
    where annotation_layers.name = :annotation and dependencies.head_index is not null
        and relation_map.relation in ('det', 'dobj', 'poss')
        and dependencies.segment_id in (select segment_id from analysed)
),

offsets as (
    select * from (values (-3), (-2), (-1), (1), (2), (3)) as offset_values (offset_)
),

best_baseline as (
    select relation, max(accuracy) as accuracy
    from (
        select labelled_arcs.relation, offsets.offset_,
               sum(case when labelled_arcs.head_word = labelled_arcs.dependent + offsets.offset_ then 100.0 else 0.0 end) / count(*) as accuracy
        from labelled_arcs
        cross join offsets
        group by labelled_arcs.relation, offsets.offset_
    ) as baselines
    group by relation
),

beats_baseline as (
    select best_head.relation || '_beats_offset' as claim,
           100 * best_head.p - best_baseline.accuracy as value,
           100 * (p + 1.9208 / n_real - 1.96 * sqrt(p * (1 - p) / n_real + 0.9604 / (n_real * n_real))) / (1 + 3.8416 / n_real) - best_baseline.accuracy as ci_low,
           100 * (p + 1.9208 / n_real + 1.96 * sqrt(p * (1 - p) / n_real + 0.9604 / (n_real * n_real))) / (1 + 3.8416 / n_real) - best_baseline.accuracy as ci_high,
           'head ' || (best_head.layer + 1) || '-' || (best_head.head + 1) || ' ' || best_head.direction || ' over '
               || best_head.n || ' arcs, minus the best offset baseline' as detail
    from best_head
    join best_baseline on best_baseline.relation = best_head.relation
    where best_head.rank = 1 and best_head.n >= :min_arcs
),

overall as (
    select 'no_head_parses_overall' as claim, 100 * p as value,
           100 * (p + 1.9208 / n_real - 1.96 * sqrt(p * (1 - p) / n_real + 0.9604 / (n_real * n_real))) / (1 + 3.8416 / n_real) as ci_low,
           100 * (p + 1.9208 / n_real + 1.96 * sqrt(p * (1 - p) / n_real + 0.9604 / (n_real * n_real))) / (1 + 3.8416 / n_real) as ci_high,
           'head ' || (layer + 1) || '-' || (head + 1) || ' ' || direction || ' on all ' || n || ' non-punctuation arcs' as detail
    from best_head
    where relation = 'all' and rank = 1
),

-- Coreference (paper §4.3, Table 2).
coref_scored as (
    select coref_predictions.mention_id, coref_predictions.layer, coref_predictions.head, coref_predictions.correct
    from coref_predictions
    join latest on latest.run_id = coref_predictions.run_id and latest.analysis = 'coref'
),

coref_heads as (
    select layer, head, sum(case when correct then 1.0 else 0.0 end) / count(*) as p, count(*) * 1.0 as n_real,
           row_number() over (order by sum(case when correct then 1.0 else 0.0 end) / count(*) desc, layer, head) as rank
    from coref_scored
    group by layer, head
),

head_match as (
    select 100 * sum(case when coref_baselines.correct then 1.0 else 0.0 end) / count(*) as accuracy
    from coref_baselines
    where coref_baselines.baseline = 'head_match'
        and coref_baselines.mention_id in (select mention_id from coref_scored where layer = 0 and head = 0)
),

coref as (
    select 'coref_head_beats_head_match' as claim,
           100 * p - head_match.accuracy as value,
           100 * (p + 1.9208 / n_real - 1.96 * sqrt(p * (1 - p) / n_real + 0.9604 / (n_real * n_real))) / (1 + 3.8416 / n_real) - head_match.accuracy as ci_low,
           100 * (p + 1.9208 / n_real + 1.96 * sqrt(p * (1 - p) / n_real + 0.9604 / (n_real * n_real))) / (1 + 3.8416 / n_real) - head_match.accuracy as ci_high,
           'head ' || (layer + 1) || '-' || (head + 1) || ' minus head-word match' as detail
    from coref_heads
    cross join head_match
    where rank = 1 and head_match.accuracy is not null
),

-- Probes (paper §5, Table 3): all layers, the latest finished run of each.
probes as (
    select probe_runs.kind, encoders.name as encoder, probe_runs.test_score, probe_runs.n_test_words,
           row_number() over (partition by probe_runs.kind, probe_runs.encoder_id order by probe_runs.finished_at desc, probe_runs.id desc) as recency
    from probe_runs
    left join encoders on encoders.id = probe_runs.encoder_id
    where probe_runs.status = 'done' and probe_runs.layers is null
),

probe_scores as (
    select
        max(case when kind = 'attn_glove' and encoder = :model then test_score end) as ours,
        max(case when kind = 'attn_glove' and encoder = :model then n_test_words end) as n,
        max(case when kind = 'distance_glove' then test_score end) as distances,
        max(case when kind = 'attn_glove' and encoder = :random_model then test_score end) as random_init
    from probes
    where recency = 1
),

probe as (
    select 'attention_glove_beats_controls' as claim,
           ours - greatest(distances, random_init) as value,
           100 * (ours / 100 + 1.9208 / n - 1.96 * sqrt((ours / 100) * (1 - ours / 100) / n + 0.9604 / (n * n))) / (1 + 3.8416 / n) - greatest(distances, random_init) as ci_low,
           100 * (ours / 100 + 1.9208 / n + 1.96 * sqrt((ours / 100) * (1 - ours / 100) / n + 0.9604 / (n * n))) / (1 + 3.8416 / n) - greatest(distances, random_init) as ci_high,
           'attn+GloVe UAS minus the better of distances+GloVe and ' || :random_model || ' attn+GloVe' as detail
    from probe_scores
    where ours is not null and distances is not null and random_init is not null
),

-- Clustering (paper §6): heads of one layer are closer to each other than to other layers' heads.
distances as (
    select head_distances.layer_a = head_distances.layer_b as same_layer, head_distances.jsd
    from head_distances
    join latest on latest.run_id = head_distances.run_id and latest.analysis = 'clustering'
),

clusters as (
    select 'same_layer_heads_cluster' as claim,
           avg(case when same_layer then jsd end) / avg(case when not same_layer then jsd end) as value,
           cast(null as double precision) as ci_low, cast(null as double precision) as ci_high,
           'mean Jensen-Shannon distance within a layer / between layers' as detail
    from distances
    having count(*) > 0
),

results as (
    select * from sep_sink
    union all select * from special_sink
    union all select * from direction
    union all select * from beats_baseline
    union all select * from overall
    union all select * from coref
    union all select * from probe
    union all select * from clusters
),

claim_list as (
    select * from (values
        (1, 'sep_sink', 'surface', 'some middle-layer head puts most (over 50%) of its attention on [SEP]', 50.0, 'above'),
        (2, 'special_sink', 'surface', 'some middle-layer head puts most (over 50%) of its attention on [CLS] and [SEP]', 50.0, 'above'),
        (3, 'dependent_to_head', 'linguistic', 'dependent-to-head is the better direction for most relations (interval above 50%)', 50.0, 'ci_above'),
        (4, 'det_beats_offset', 'linguistic', 'the best det head beats the best fixed-offset baseline by 10 points or more', 10.0, 'above'),
        (5, 'dobj_beats_offset', 'linguistic', 'the best dobj head beats the best fixed-offset baseline by 10 points or more', 10.0, 'above'),
        (6, 'poss_beats_offset', 'linguistic', 'the best poss head beats the best fixed-offset baseline by 10 points or more', 10.0, 'above'),
        (7, 'no_head_parses_overall', 'negative', 'no single head parses well overall (best head under 50% on all arcs)', 50.0, 'below'),
        (8, 'coref_head_beats_head_match', 'linguistic', 'the best coreference head beats the head-word match baseline', 0.0, 'above'),
        (9, 'attention_glove_beats_controls', 'linguistic', 'attention + GloVe parses better than distances + GloVe and than the random-init attention', 0.0, 'above'),
        (10, 'same_layer_heads_cluster', 'surface', 'heads of the same layer attend alike (within-layer distance under between-layer)', 1.0, 'below')
    ) as claims_ (sort_order, claim, kind, statement, threshold, rule)
),

final as (
    select
        claim_list.claim,
        claim_list.kind,
        claim_list.statement,
        case
            when results.value is null then null
            when claim_list.rule = 'above' then results.value > claim_list.threshold
            when claim_list.rule = 'ci_above' then results.ci_low > claim_list.threshold
            else results.value < claim_list.threshold
        end as held,
        results.value,
        results.ci_low,
        results.ci_high,
        claim_list.threshold,
        results.detail,
        claim_list.sort_order
    from claim_list
    left join results on results.claim = claim_list.claim
)

select claim, kind, statement, held, value, ci_low, ci_high, threshold, detail
from final
order by sort_order
