-- head_clusters: each head's position in the MDS map of Jensen-Shannon distances, labelled by its dominant surface behaviour (paper Figure 6)
-- analysis: clustering
-- params:
--   run_id  a finished clustering run (default: the latest); its encoder's and corpus' latest surface run gives the labels
--   position = 0.5  share of attention on the previous / next token that makes a positional head (the paper's 50%)
--   special = 0.6  share on [CLS], on [SEP], or on periods + commas that makes a special-token head (the authors' code: 0.6)
--   broad = 0.8  entropy over uniform entropy above which a head is broad (0.8 x ln 128 = 3.9 nats, the authors' 3.8)
-- columns:
--   layer      1-based layer
--   head       1-based head within its layer
--   label      the paper's layer-head name
--   x          MDS coordinate
--   y          MDS coordinate
--   behaviour  previous token / next token / [CLS] / [SEP] / punctuation / broad / other (first that applies, in this order)
with clustering as (
    select encoder_id, corpus_id from runs where id = :run_id
),

surface as (
    select
        head_surface.*,
        head_surface.attn_period + head_surface.attn_comma as attn_punct,
        head_surface.entropy / head_surface.uniform_entropy as relative_entropy
    from head_surface
    join latest_runs on latest_runs.run_id = head_surface.run_id and latest_runs.analysis = 'surface'
    join clustering
        on clustering.encoder_id = latest_runs.encoder_id and clustering.corpus_id = latest_runs.corpus_id
),

final as (
    select
        head_coords.layer + 1 as layer,
        head_coords.head + 1 as head,
        (head_coords.layer + 1) || '-' || (head_coords.head + 1) as label,
        head_coords.x,
        head_coords.y,
        case
            when surface.attn_prev > :position then 'previous token'
            when surface.attn_next > :position then 'next token'
            when surface.attn_cls > :special then '[CLS]'
            when surface.attn_sep > :special then '[SEP]'
            when surface.attn_punct > :special then 'punctuation'
            when surface.relative_entropy > :broad then 'broad'
            when surface.layer is null then 'unknown (no surface run)'
            else 'other'
        end as behaviour
    from head_coords
    left join surface on surface.layer = head_coords.layer and surface.head = head_coords.head
    where head_coords.run_id = :run_id
)

select * from final order by layer, head
