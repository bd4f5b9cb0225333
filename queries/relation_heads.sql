-- relation_heads: the top-k attention heads for every dependency label of a layer (labels as annotated, unmapped)
-- analysis: syntax
-- params:
--   run_id  a finished syntax run (default: the latest)
--   annotation = gold  dependency layer to score against (gold or silver)
--   top_k = 3  heads listed per label
--   min_arcs = 50  labels with fewer arcs are left out
-- columns:
--   label      the layer's dependency label
--   arcs       non-root arcs with that label in the analysed segments
--   rank       1 = best head for the label
--   head       attention head, the paper's 1-based layer-head name
--   direction  d2h / h2d / h2d_col (see table1_relations)
--   accuracy   percent of arcs right
with scores as (
    select * from arc_scores where run_id = :run_id and annotation = :annotation
),

ranked as (
    select *, row_number() over (partition by label order by correct * 1.0 / n desc, layer, head, direction) as rank
    from scores
    where n >= :min_arcs
),

final as (
    select label, n as arcs, rank, (layer + 1) || '-' || (head + 1) as head, direction, 100.0 * correct / n as accuracy
    from ranked
    where rank <= :top_k
)

select * from final order by arcs desc, label, rank
