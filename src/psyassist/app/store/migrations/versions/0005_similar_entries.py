"""Sealed similar-case index entries (issue 12 §3): a note's BM25 tokens and vector, encrypted with the
client's key, so a login rebuilds the in-memory index without re-tokenizing or re-embedding.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ID = sa.String(32)


def upgrade() -> None:
    op.create_table(
        "similar_entries",
        sa.Column("note_id", ID, sa.ForeignKey("notes.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("client_id", ID, sa.ForeignKey("clients.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("tokens_ct", sa.LargeBinary, nullable=False),
        sa.Column("vector_model", sa.String(128), nullable=True),
        sa.Column("vector_ct", sa.LargeBinary, nullable=True),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("similar_entries")
