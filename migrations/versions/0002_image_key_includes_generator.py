"""An image's natural key within a job includes its generator version

An evaluation job draws the baseline and the candidate arm with the same (prompt, seed) pairs,
so (job, prompt, seed) alone would refuse the second arm.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHERE = sa.text("job_id IS NOT NULL")


def upgrade() -> None:
    op.drop_index("uq_image_job_id_prompt_id_seed", table_name="image", postgresql_where=WHERE, sqlite_where=WHERE)
    op.create_index("uq_image_job_id_generator_version_id_prompt_id_seed", "image",
                    ["job_id", "generator_version_id", "prompt_id", "seed"], unique=True,
                    postgresql_where=WHERE, sqlite_where=WHERE)


def downgrade() -> None:
    op.drop_index("uq_image_job_id_generator_version_id_prompt_id_seed", table_name="image",
                  postgresql_where=WHERE, sqlite_where=WHERE)
    op.create_index("uq_image_job_id_prompt_id_seed", "image", ["job_id", "prompt_id", "seed"], unique=True,
                    postgresql_where=WHERE, sqlite_where=WHERE)
