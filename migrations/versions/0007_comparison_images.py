"""Comparisons show several images a side (the paper's 4 against 4): comparison_image lists them

Revision ID: 0007
Revises: 0006

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "comparison_image",
        sa.Column("comparison_id", BigIntPK, nullable=False),
        sa.Column("side", sa.String(length=1), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("image_id", BigIntPK, nullable=False),
        sa.Column("id", BigIntPK, autoincrement=True, nullable=False),
        sa.CheckConstraint("side IN ('a', 'b')", name=op.f("ck_comparison_image_side")),
        sa.CheckConstraint("position >= 0", name=op.f("ck_comparison_image_position_non_negative")),
        sa.ForeignKeyConstraint(["comparison_id"], ["comparison.id"],
                                name=op.f("fk_comparison_image_comparison_id_comparison"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["image_id"], ["image.id"], name=op.f("fk_comparison_image_image_id_image"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_comparison_image")),
        sa.UniqueConstraint("comparison_id", "side", "position",
                            name=op.f("uq_comparison_image_comparison_id_side_position")),
    )
    op.create_index("ix_comparison_image_image_id", "comparison_image", ["image_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_comparison_image_image_id", table_name="comparison_image")
    op.drop_table("comparison_image")
