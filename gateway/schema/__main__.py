"""``python -m gateway.schema`` rewrites gateway/schema.graphql from the code."""
from pathlib import Path

from graphql import print_schema

from gateway.schema import schema

TARGET = Path(__file__).resolve().parents[1] / "schema.graphql"

if __name__ == "__main__":
    TARGET.write_text(print_schema(schema.graphql_schema) + "\n")
    print(f"wrote {TARGET}")
