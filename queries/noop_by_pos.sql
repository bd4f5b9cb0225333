-- noop_by_pos: how much attention one head sends to special tokens from words of each part of speech
-- analysis: syntax
-- params:
--   run_id  a finished syntax run (default: the latest)
--   head_label = 1-1  the head, in the paper's 1-based layer-head form
--   min_words = 20  parts of speech with fewer words are left out
-- columns:
--   upos     universal part of speech (gold, else the silver layer's)
--   words    words of that part of speech
--   sep      mean attention to [SEP] tokens
--   cls      mean attention to [CLS]
--   special  sep + cls: the share a head parks on special tokens ("no-op")
with silver_pos as (
    select dependencies.segment_id, dependencies.word_index, dependencies.upos
    from dependencies
    join annotation_layers on annotation_layers.id = dependencies.layer_id
    where annotation_layers.kind = 'silver' and dependencies.upos is not null
),

rows_ as (
    select coalesce(words.upos, silver_pos.upos, '?') as upos, head_predictions.sep_weight, head_predictions.cls_weight
    from head_predictions
    join words on words.segment_id = head_predictions.segment_id and words.word_index = head_predictions.word_index
    left join silver_pos on silver_pos.segment_id = head_predictions.segment_id and silver_pos.word_index = head_predictions.word_index
    where head_predictions.run_id = :run_id and (head_predictions.layer + 1) || '-' || (head_predictions.head + 1) = :head_label
),

final as (
    select upos, count(*) as words, avg(sep_weight) as sep, avg(cls_weight) as cls, avg(sep_weight + cls_weight) as special
    from rows_
    group by upos
    having count(*) >= :min_words
)

select * from final order by special desc
