-- example_maps: the word-level attention of one example sentence, every head, with the tokens (paper Figure 5)
-- analysis: examples
-- params:
--   run_id  a finished examples run (default: the latest)
--   example = 1  which of the run's example sentences (1 = the first in corpus order)
-- columns:
--   segment_id   the sentence's segment
--   layer        1-based layer
--   head         1-based head within its layer
--   query_unit   row of the word-level map (0 = [CLS])
--   key_unit     column of the word-level map
--   query_token  the word (or special token) attending
--   key_token    the word (or special token) attended to
--   weight       attention weight
with examples as (
    select distinct example_maps.segment_id, segments.seg_index
    from example_maps
    join segments on segments.id = example_maps.segment_id
    where example_maps.run_id = :run_id
),

chosen as (
    select segment_id from (
        select segment_id, row_number() over (order by seg_index) as position from examples
    ) as numbered
    where position = :example
),

cells as (
    select example_maps.*
    from example_maps
    join chosen on chosen.segment_id = example_maps.segment_id
    where example_maps.run_id = :run_id
),

final as (
    select
        cells.segment_id,
        cells.layer + 1 as layer,
        cells.head + 1 as head,
        cells.query_unit,
        cells.key_unit,
        coalesce(query_words.form, case when cells.query_unit = 0 then '[CLS]' else '[SEP]' end) as query_token,
        coalesce(key_words.form, case when cells.key_unit = 0 then '[CLS]' else '[SEP]' end) as key_token,
        cells.weight
    from cells
    left join words as query_words
        on query_words.segment_id = cells.segment_id and query_words.word_index = cells.query_word
    left join words as key_words
        on key_words.segment_id = cells.segment_id and key_words.word_index = cells.key_word
)

select * from final order by layer, head, query_unit, key_unit
