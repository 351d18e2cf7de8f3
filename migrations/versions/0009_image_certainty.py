"""Images carry the labelling order a reward model gave them: `certainty`, in the pool index

`train_reward` jobs with `"label_order": "uncertain"` write each image's certainty (how sure
the new reward model is of it, 2·|score − ½| in permille); "next" hands out, among equally full
images, the least certain first. The pool index gains the column between the open count and the
id, so "next" stays one ordered range scan stopped by its LIMIT. Existing images get 0, which
keeps their order (fullest first, then by id) until a model ranks them.

Revision ID: 0009
Revises: 0008

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN_POOL = sa.text("ratings_open > 0 AND gold_label IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("image") as batch:
        batch.add_column(sa.Column("certainty", sa.SmallInteger(), server_default=sa.text("0"), nullable=False))
        batch.create_check_constraint(op.f("ck_image_certainty_permille"), "certainty >= 0 AND certainty <= 1000")
    op.drop_index("ix_image_pool", table_name="image", postgresql_where=OPEN_POOL, sqlite_where=OPEN_POOL)
    op.create_index("ix_image_pool", "image", ["prompt_set_id", "ratings_open", "certainty", "id"], unique=False,
                    postgresql_where=OPEN_POOL, sqlite_where=OPEN_POOL)


def downgrade() -> None:
    op.drop_index("ix_image_pool", table_name="image", postgresql_where=OPEN_POOL, sqlite_where=OPEN_POOL)
    op.create_index("ix_image_pool", "image", ["prompt_set_id", "ratings_open", "id"], unique=False,
                    postgresql_where=OPEN_POOL, sqlite_where=OPEN_POOL)
    with op.batch_alter_table("image") as batch:
        batch.drop_constraint(op.f("ck_image_certainty_permille"), type_="check")
        batch.drop_column("certainty")
