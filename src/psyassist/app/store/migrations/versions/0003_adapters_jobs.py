"""Per-client adapters (versions, figures; weights sealed in the blob store) and durable jobs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ID = sa.String(32)


def upgrade() -> None:
    with op.batch_alter_table("clients") as b:  # batch: SQLite rebuilds the table, PostgreSQL alters it
        b.add_column(sa.Column("adapter_choice", sa.String(16), nullable=True))
    op.create_table(
        "adapters",
        sa.Column("id", ID, primary_key=True),
        sa.Column("client_id", ID, sa.ForeignKey("clients.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("owner_id", ID, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("base_model", sa.String(256), nullable=False),
        sa.Column("blob_key", sa.String(200), nullable=False),
        sa.Column("size_bytes", sa.Integer, nullable=False),
        sa.Column("manifest", sa.Text, nullable=False),
        sa.Column("memorization", sa.Text, nullable=False),
        sa.Column("job_id", ID, nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("client_id", "version"),
    )
    op.create_table(
        "jobs",
        sa.Column("id", ID, primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("client_id", ID, sa.ForeignKey("clients.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("owner_id", ID, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("progress", sa.Text, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("cancel_requested", sa.Boolean, nullable=False),
        sa.Column("worker", sa.String(128), nullable=True),
        sa.Column("adapter_id", ID, nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=True),
        sa.Column("heartbeat_at", sa.DateTime, nullable=True),
        sa.Column("finished_at", sa.DateTime, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("jobs")
    op.drop_table("adapters")
    with op.batch_alter_table("clients") as b:
        b.drop_column("adapter_choice")
