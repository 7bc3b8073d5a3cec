"""The knowledge library in the app's database (issue 12): kb_ tables shared with `psyassist kb`, and the
per-draft / per-chat switch for using it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The same columns as psyassist.kb.store (a CLI `kb ingest --index <this database> --library clinic`
    # writes into these tables); the library is "u:<user id>" for a counselor's own documents.
    op.create_table(
        "kb_meta",
        sa.Column("library", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "kb_documents",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("library", sa.String(64), nullable=False, index=True),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False, index=True),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("author", sa.Text, nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("n_chunks", sa.Integer, nullable=False),
        sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("library", "path"),
    )
    op.create_table(
        "kb_chunks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("document_id", sa.Integer, sa.ForeignKey("kb_documents.id", ondelete="CASCADE"), nullable=False,
                  index=True),
        sa.Column("ord", sa.Integer, nullable=False),
        sa.Column("section", sa.Text, nullable=False),
        sa.Column("page", sa.Integer, nullable=True),
        sa.Column("page_end", sa.Integer, nullable=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("n_tokens", sa.Integer, nullable=False),
        sa.Column("bm25_tokens", sa.Text, nullable=False),
        sa.Column("embedding", sa.LargeBinary, nullable=True),
    )
    with op.batch_alter_table("drafts") as b:
        b.add_column(sa.Column("use_library", sa.Boolean, nullable=False, server_default=sa.true()))
    with op.batch_alter_table("chats") as b:
        b.add_column(sa.Column("use_library", sa.Boolean, nullable=False, server_default=sa.true()))


def downgrade() -> None:
    with op.batch_alter_table("chats") as b:
        b.drop_column("use_library")
    with op.batch_alter_table("drafts") as b:
        b.drop_column("use_library")
    op.drop_table("kb_chunks")
    op.drop_table("kb_documents")
    op.drop_table("kb_meta")
