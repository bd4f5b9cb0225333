"""Storage: SQLAlchemy models (schema.py), engine factory (db.py), the one writer (write.py)."""
