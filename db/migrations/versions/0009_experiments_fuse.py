"""experiments gain `fuse` and `fused`

`fuse`: the run may be trained as a member of a fused program with runs of its sweep or search
that share its model shape (worker/fusion.py); existing runs were not submitted with that choice
and stay solo. `fused`: how many members the program that trained it had (NULL: trained alone).

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("experiments", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("fuse", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(sa.Column("fused", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("experiments", schema=None) as batch_op:
        batch_op.drop_column("fused")
        batch_op.drop_column("fuse")
