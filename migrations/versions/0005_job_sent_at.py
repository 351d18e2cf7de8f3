"""Jobs record when their message reached the broker, so one accepted while it was down is re-sent

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.db.base import UTCDateTime

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("job") as batch:
        batch.add_column(sa.Column("sent_at", UTCDateTime(timezone=True), nullable=True))
    # jobs that exist already were sent (or have run): only new ones are watched
    op.execute("UPDATE job SET sent_at = created_at")


def downgrade() -> None:
    with op.batch_alter_table("job") as batch:
        batch.drop_column("sent_at")
