-- runs: analysis runs, newest first, with status, duration, segments and MLflow run id
-- params:
--   limit = 30  how many runs to list
-- columns:
--   run            database run id
--   analysis       analysis name
--   variant        maps and loss: weight or norm (attention weights or ||alpha f(x)||), plus the gradient objective (mlm / contrastive)
--   model          encoder name
--   corpus         corpus name
--   status         running / done / failed
--   started        start time (UTC)
--   seconds        wall time of the run, if finished
--   segments       segments analysed
--   skipped        segments left out, by reason (JSON)
--   mlflow_run_id  the MLflow run of the same analysis
--   mlflow         logged, or pending: MLflow has not seen the whole run (server down, or still running); `headlens runs --relog` logs it
with runs_ as (
    select * from runs
),

final as (
    select
        runs_.id as run,
        runs_.analysis,
        coalesce(run_variants.weighting, 'weight') || coalesce(' ' || run_variants.objective, '') as variant,
        encoders.name as model,
        corpora.name as corpus,
        runs_.status,
        runs_.started_at as started,
        round(cast(extract(epoch from runs_.finished_at - runs_.started_at) as numeric), 1) as seconds,
        runs_.n_segments as segments,
        runs_.skipped_json as skipped,
        runs_.mlflow_run_id,
        case when mlflow_backlog.ref_id is null then 'logged' else 'pending' end as mlflow
    from runs_
    join encoders on encoders.id = runs_.encoder_id
    join corpora on corpora.id = runs_.corpus_id
    left join mlflow_backlog on mlflow_backlog.kind = 'analysis' and mlflow_backlog.ref_id = runs_.id
    left join run_variants on run_variants.run_id = runs_.id
)

select * from final order by run desc limit :limit
