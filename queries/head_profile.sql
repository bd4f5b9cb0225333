-- head_profile: everything one attention head does syntactically: its accuracy on every label and direction, and its rank among all heads
-- analysis: syntax
-- params:
--   run_id  a finished syntax run (default: the latest)
--   annotation = gold  dependency layer to score against (gold or silver)
--   head_label = 1-1  the head, in the paper's 1-based layer-head form, e.g. 8-11
--   min_arcs = 20  labels with fewer arcs are left out
-- columns:
--   label      dependency label
--   direction  d2h / h2d / h2d_col (see table1_relations)
--   arcs       arcs with that label
--   accuracy   percent right for this head
--   rank       this head's rank among all heads for the label and direction (1 = best)
--   best       accuracy of the best head for the label and direction
with scores as (
    select * from arc_scores where run_id = :run_id and annotation = :annotation
),

ranked as (
    select
        *,
        100.0 * correct / n as accuracy,
        rank() over (partition by label, direction order by correct * 1.0 / n desc) as rank,
        max(100.0 * correct / n) over (partition by label, direction) as best
    from scores
    where n >= :min_arcs
),

final as (
    select label, direction, n as arcs, accuracy, rank, best
    from ranked
    where (layer + 1) || '-' || (head + 1) = :head_label
)

select * from final order by accuracy desc, label, direction
