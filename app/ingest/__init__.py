"""Ingestion: encoders and corpora from local files into the database's vocabulary."""
