"""Per-second features: DuckDB SQL for the set-based columns, numpy for the rolling statistics and labels."""
