"""Gold pairs are served by the annotation hot path: a partial index finds them by id

The hot path's `next` statement (statements.gold) and the portable engine (leases.pick_gold) look
for the caller's unseen gold pairs in id order. Without this index that is an ordered scan of the
primary key filtered down to the few gold pairs, which grows with the table; with it, a range scan
of the gold pairs alone. Gold images already have ix_image_gold (prompt_set_id, id).

Revision ID: 0008
Revises: 0007

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GOLD = sa.text("gold_alignment IS NOT NULL OR gold_fidelity IS NOT NULL")


def upgrade() -> None:
    op.create_index("ix_comparison_gold", "comparison", ["id"], unique=False, postgresql_where=GOLD,
                    sqlite_where=GOLD)


def downgrade() -> None:
    op.drop_index("ix_comparison_gold", table_name="comparison", postgresql_where=GOLD, sqlite_where=GOLD)
