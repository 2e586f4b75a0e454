"""The run's trained model (which weights, its size, whether it was kept) and its evaluation
(confusion matrix, per-class precision and recall on the test set and the hold-out). Both are
null for runs that finished before this revision: they have no model artifact.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("experiments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("model_info", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("evaluation", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("experiments", schema=None) as batch_op:
        batch_op.drop_column("evaluation")
        batch_op.drop_column("model_info")
