-- noop_relation_heads: the [SEP] "no-op": for the best head of each relation, how much attention goes to special tokens when its relation applies to the word and when it does not
-- analysis: syntax
-- params:
--   run_id  a finished syntax run (default: the latest)
--   annotation = gold  dependency layer that says which relation a word has (gold or silver)
--   min_arcs = 100  relations with fewer arcs are left out
-- columns:
--   relation          the paper's relation
--   head              its best dependent->head head (the paper's 1-based name)
--   accuracy          that head's d2h accuracy on the relation (percent)
--   words_applies     words whose relation it is
--   sep_applies       mean attention from those words to [SEP] tokens
--   cls_applies       mean attention from those words to [CLS]
--   words_otherwise   all other words
--   sep_otherwise     mean attention from the other words to [SEP] tokens
--   cls_otherwise     mean attention from the other words to [CLS]
with layer_ as (
    select annotation_layers.id, annotation_layers.scheme
    from annotation_layers
    join runs on runs.corpus_id = annotation_layers.corpus_id
    where runs.id = :run_id and annotation_layers.name = :annotation
),

scores as (
    select paper_relation as relation, layer, head, sum(correct) as correct, sum(n) as n
    from arc_scores
    where run_id = :run_id and annotation = :annotation and direction = 'd2h' and paper_relation is not null
    group by paper_relation, layer, head
),

best as (
    select *, row_number() over (partition by relation order by correct * 1.0 / n desc, layer, head) as rank
    from scores
    where n >= :min_arcs
),

word_relations as (
    select dependencies.segment_id, dependencies.word_index, relation_map.relation
    from dependencies
    join layer_ on layer_.id = dependencies.layer_id
    left join relation_map on relation_map.scheme = layer_.scheme and relation_map.label = dependencies.relation
),

final as (
    select
        best.relation,
        (best.layer + 1) || '-' || (best.head + 1) as head,
        100.0 * best.correct / best.n as accuracy,
        count(*) filter (where word_relations.relation = best.relation) as words_applies,
        avg(head_predictions.sep_weight) filter (where word_relations.relation = best.relation) as sep_applies,
        avg(head_predictions.cls_weight) filter (where word_relations.relation = best.relation) as cls_applies,
        count(*) filter (where word_relations.relation is distinct from best.relation) as words_otherwise,
        avg(head_predictions.sep_weight) filter (where word_relations.relation is distinct from best.relation) as sep_otherwise,
        avg(head_predictions.cls_weight) filter (where word_relations.relation is distinct from best.relation) as cls_otherwise
    from best
    join head_predictions
        on head_predictions.run_id = :run_id and head_predictions.layer = best.layer and head_predictions.head = best.head
    join word_relations
        on word_relations.segment_id = head_predictions.segment_id and word_relations.word_index = head_predictions.word_index
    where best.rank = 1
    group by best.relation, best.layer, best.head, best.correct, best.n
)

select * from final order by relation
