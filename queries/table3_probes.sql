-- table3_probes: the paper's Table 3: dependency parsing from attention with probing classifiers, next to the baselines
-- params:
--   model = minilm  the encoder whose attention the probes read
--   random_model = minilm-random  its randomly initialised copy (the random-init control)
--   test_corpus = ud-ewt-test  the corpus the scores are on
-- columns:
--   probe         the paper's row: right_branching, distance_glove, random_attn_glove, attn, attn_glove, structural, or attn_glove restricted to one layer
--   encoder       the encoder the probe read (none for the baselines)
--   layers        attention layers the probe could read (0-based; empty: all)
--   metric        uas, or uuas for the structural probe (undirected, not comparable to uas)
--   test          score on test_corpus (percent, punctuation excluded)
--   dev           score on the dev corpus at the early-stopping epoch (percent)
--   test_words    words scored on test
--   best_epoch    the epoch whose weights were kept
--   paper         the paper's number for the row (BERT-base on PTB; structural: Hewitt & Manning)
--   mlflow_run_id the MLflow run with the training curve and learned weights
with latest as (
    select
        probe_runs.*,
        encoders.name as encoder,
        row_number() over (
            partition by probe_runs.kind, probe_runs.encoder_id, probe_runs.layers
            order by probe_runs.finished_at desc, probe_runs.id desc
        ) as recency
    from probe_runs
    join corpora on corpora.id = probe_runs.test_corpus_id
    left join encoders on encoders.id = probe_runs.encoder_id
    -- Sweep children that were not selected have no test score: only the best dev configuration counts.
    where probe_runs.status = 'done' and probe_runs.test_score is not null and corpora.name = :test_corpus
),

labelled as (
    select
        case
            when kind = 'attn_glove' and encoder = :random_model then 'random_attn_glove'
            when kind = 'attn_glove' and layers is not null then 'attn_glove, layer ' || layers
            else kind
        end as probe,
        *
    from latest
    where recency = 1
        and (encoder is null or encoder = :model or (encoder = :random_model and kind = 'attn_glove'))
        and (layers is null or kind = 'attn_glove')
),

final as (
    select
        labelled.probe,
        coalesce(labelled.encoder, '') as encoder,
        coalesce(labelled.layers, '') as layers,
        labelled.metric,
        labelled.test_score as test,
        labelled.dev_score as dev,
        labelled.n_test_words as test_words,
        labelled.best_epoch,
        paper_probes.paper_score as paper,
        labelled.mlflow_run_id,
        coalesce(paper_probes.sort_order, 10) as sort_order
    from labelled
    left join paper_probes on paper_probes.model = labelled.probe
)

select probe, encoder, layers, metric, test, dev, test_words, best_epoch, paper, mlflow_run_id
from final
order by sort_order, probe
