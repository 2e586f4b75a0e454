"""searches record their owner

Existing searches have no owner: the implicit local admin's, like the sweeps before 0005.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("searches", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_searches_owner_id"), ["owner_id"], unique=False)
        batch_op.create_foreign_key("fk_searches_owner_id_users", "users", ["owner_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("searches", schema=None) as batch_op:
        batch_op.drop_constraint("fk_searches_owner_id_users", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_searches_owner_id"))
        batch_op.drop_column("owner_id")
