"""Analyses: pure functions and streaming accumulators over attention maps.

Nothing here touches the database, MLflow or files: analyses consume AttentionBatches and
return rows (column arrays) that the pipeline stores.
"""
