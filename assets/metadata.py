"""What every harvest asset declares the same way: owners, its column schema and row count, its code version.

One home for the Dagster-facing description of a table, so the raw kinds, the daily kinds and ``features_1s`` show
their columns, row counts and versions alike in the UI.
"""

import hashlib

import dagster as dg
import pyarrow as pa

OWNERS = ["team:harvest"]
COLUMN_SCHEMA = "dagster/column_schema"
ROW_COUNT = "dagster/row_count"


def table_schema(arrow_schema: pa.Schema) -> dg.TableSchema:
    """The columns of an Arrow schema as Dagster shows them (name, Arrow type, nullability)."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(field.name, str(field.type), constraints=dg.TableColumnConstraints(nullable=field.nullable))
            for field in arrow_schema
        ]
    )


def code_version(logic_version: int, arrow_schema: pa.Schema) -> str:
    """``<logic>.<schema digest>``: bump ``logic_version`` when the code that writes the table changes; a change of
    its columns changes the version by itself (8 hex digits of the schema's SHA-256)."""
    digest = hashlib.sha256(arrow_schema.to_string(show_schema_metadata=False).encode()).hexdigest()[:8]
    return f"{logic_version}.{digest}"
