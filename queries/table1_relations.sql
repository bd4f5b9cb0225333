-- table1_relations: the paper's Table 1: per relation, the best head and direction with its accuracy, next to the best fixed-offset baseline and the paper's numbers
-- analysis: syntax
-- params:
--   run_id  a finished syntax run (default: the latest)
--   weighting  weight (attention weights, default) or norm (||alpha f(x)||, Kobayashi et al. 2020); picks the run when run_id is not given
--   annotation = gold  dependency layer to score against: gold, or silver (spaCy, Stanford-style labels)
--   min_arcs = 100  relations with fewer arcs get no row numbers (the paper's cut-off)
-- columns:
--   relation         the paper's relation ('all' = every non-punctuation arc); labels mapped through relation_map
--   arcs             arcs of the relation in the analysed segments (root arcs have no head word and are not scored)
--   head             best attention head, the paper's 1-based layer-head name
--   direction        d2h: dependent attends most to head; h2d: head attends most to dependent; h2d_col: head is the word attending most to dependent
--   accuracy         percent of arcs the best head and direction get right
--   ci_low           95% Wilson interval of that accuracy, low end (percent)
--   ci_high          95% Wilson interval, high end (percent)
--   baseline         best fixed-offset baseline (percent): always predict the word at dependent + offset
--   baseline_offset  that offset, in -3..3
--   paper_head       the paper's best head (BERT-base, PTB with Stanford Dependencies)
--   paper_accuracy   the paper's accuracy (percent)
--   paper_baseline   the paper's baseline (percent)
--   note             mapping caveat, or why the relation has no numbers here
with scores_by_label as materialized (
    select * from arc_scores where run_id = :run_id and annotation = :annotation
),

scores as (
    select paper_relation as relation, layer, head as attention_head, direction, sum(correct) as correct, sum(n) as n
    from scores_by_label where paper_relation is not null
    group by paper_relation, layer, head, direction
    union all
    select 'all', layer, head, direction, sum(correct), sum(n)
    from scores_by_label where label <> 'punct'
    group by layer, head, direction
),

layer_ as (
    select annotation_layers.id, annotation_layers.scheme
    from annotation_layers
    join runs on runs.corpus_id = annotation_layers.corpus_id
    where runs.id = :run_id and annotation_layers.name = :annotation
),

analysed as (
    select segment_id from head_predictions where run_id = :run_id and layer = 0 and head = 0
),

labelled_arcs as (
    select dependencies.word_index as dependent, dependencies.head_index as head_word,
           dependencies.relation as label, relation_map.relation as paper_relation
    from dependencies
    join layer_ on layer_.id = dependencies.layer_id
    left join relation_map on relation_map.scheme = layer_.scheme and relation_map.label = dependencies.relation
    where dependencies.head_index is not null
        and dependencies.segment_id in (select segment_id from analysed)
),

arcs as (
    select paper_relation as relation, dependent, head_word from labelled_arcs where paper_relation is not null
    union all
    select 'all', dependent, head_word from labelled_arcs where label <> 'punct'
),

best_head as (
    select *, row_number() over (partition by relation order by correct * 1.0 / n desc, layer, attention_head, direction) as rank
    from scores
),

offsets as (
    select * from (values (-3), (-2), (-1), (1), (2), (3)) as offset_values (offset_)
),

baselines as (
    select
        arcs.relation,
        offsets.offset_,
        count(*) filter (where arcs.head_word = arcs.dependent + offsets.offset_) * 100.0 / count(*) as accuracy
    from arcs
    cross join offsets
    group by arcs.relation, offsets.offset_
),

best_baseline as (
    select *, row_number() over (partition by relation order by accuracy desc, abs(offset_), offset_) as rank
    from baselines
),

notes as (
    select relation_map.relation, string_agg(distinct relation_map.note, '; ') as note
    from relation_map
    where relation_map.note is not null
        and relation_map.scheme in (select distinct scheme from scores_by_label)
    group by relation_map.relation
),

ours as (
    select
        best_head.relation,
        best_head.n as arcs,
        (best_head.layer + 1) || '-' || (best_head.attention_head + 1) as head,
        best_head.direction,
        best_head.correct * 1.0 / best_head.n as p,
        best_head.n * 1.0 as n_real,
        best_baseline.accuracy as baseline,
        best_baseline.offset_ as baseline_offset
    from best_head
    join best_baseline on best_baseline.relation = best_head.relation and best_baseline.rank = 1
    where best_head.rank = 1
),

final as (
    select
        paper_relations.relation,
        ours.arcs,
        case when ours.arcs >= :min_arcs then ours.head end as head,
        case when ours.arcs >= :min_arcs then ours.direction end as direction,
        case when ours.arcs >= :min_arcs then 100 * ours.p end as accuracy,
        case when ours.arcs >= :min_arcs then 100 * (ours.p + 1.9208 / ours.n_real - 1.96 * sqrt(ours.p * (1 - ours.p) / ours.n_real + 0.9604 / (ours.n_real * ours.n_real))) / (1 + 3.8416 / ours.n_real) end as ci_low,
        case when ours.arcs >= :min_arcs then 100 * (ours.p + 1.9208 / ours.n_real + 1.96 * sqrt(ours.p * (1 - ours.p) / ours.n_real + 0.9604 / (ours.n_real * ours.n_real))) / (1 + 3.8416 / ours.n_real) end as ci_high,
        case when ours.arcs >= :min_arcs then ours.baseline end as baseline,
        case when ours.arcs >= :min_arcs then ours.baseline_offset end as baseline_offset,
        paper_relations.paper_head,
        paper_relations.paper_accuracy,
        paper_relations.paper_baseline,
        case
            when ours.arcs is null then coalesce(paper_relations.missing_note, 'no arcs with this relation in the layer')
            when ours.arcs < :min_arcs then 'fewer than ' || :min_arcs || ' arcs'
            else notes.note
        end as note,
        paper_relations.sort_order
    from paper_relations
    left join ours on ours.relation = paper_relations.relation
    left join notes on notes.relation = paper_relations.relation
)

select
    relation, arcs, head, direction, accuracy, ci_low, ci_high, baseline, baseline_offset,
    paper_head, paper_accuracy, paper_baseline, note
from final
order by sort_order
