"""Drafts (model output + the counselor's edits, with provenance) and chat.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ID = sa.String(32)


def upgrade() -> None:
    op.create_table(
        "drafts",
        sa.Column("id", ID, primary_key=True),
        sa.Column("client_id", ID, sa.ForeignKey("clients.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("owner_id", ID, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("template", sa.String(64), nullable=False),
        sa.Column("session_date", sa.Date, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("input_ct", sa.LargeBinary, nullable=False),
        sa.Column("content_ct", sa.LargeBinary, nullable=True),
        sa.Column("model_ct", sa.LargeBinary, nullable=True),
        sa.Column("provenance", sa.Text, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("note_id", ID, nullable=True),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "chats",
        sa.Column("id", ID, primary_key=True),
        sa.Column("owner_id", ID, sa.ForeignKey("users.id"), nullable=False, index=True),
        sa.Column("client_id", ID, sa.ForeignKey("clients.id", ondelete="CASCADE"), nullable=True, index=True),
        sa.Column("title_ct", sa.LargeBinary, nullable=False),
        sa.Column("use_notes", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "chat_messages",
        sa.Column("id", ID, primary_key=True),
        sa.Column("chat_id", ID, sa.ForeignKey("chats.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("content_ct", sa.LargeBinary, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("crisis_level", sa.String(16), nullable=True),
        sa.Column("provenance", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("chat_id", "seq"),
    )


def downgrade() -> None:
    for table in ("chat_messages", "chats", "drafts"):
        op.drop_table(table)
