"""Reports: query results -> tables and figures. Never reads raw tensors."""
