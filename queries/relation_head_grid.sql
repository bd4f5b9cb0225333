-- relation_head_grid: every head's accuracy on every paper relation (best direction), for the relation x head heatmap
-- analysis: syntax
-- params:
--   run_id  a finished syntax run (default: the latest)
--   annotation = gold  dependency layer to score against (gold or silver)
--   min_arcs = 100  relations with fewer arcs are left out
-- columns:
--   relation   the paper's relation (mapped through relation_map)
--   layer      1-based layer
--   head       1-based head within its layer
--   label      the paper's layer-head name
--   accuracy   the head's accuracy on the relation in its best direction (percent)
--   direction  that direction (d2h / h2d / h2d_col)
with scores as (
    select paper_relation as relation, layer, head, direction, sum(correct) as correct, sum(n) as n
    from arc_scores
    where run_id = :run_id and annotation = :annotation and paper_relation is not null
    group by paper_relation, layer, head, direction
),

best_direction as (
    select *, row_number() over (partition by relation, layer, head order by correct * 1.0 / n desc, direction) as rank
    from scores
    where n >= :min_arcs
),

final as (
    select relation, layer + 1 as layer, head + 1 as head, (layer + 1) || '-' || (head + 1) as label,
           100.0 * correct / n as accuracy, direction
    from best_direction
    where rank = 1
)

select * from final order by relation, layer, head
