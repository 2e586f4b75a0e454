"""users and owners: users with roles, tokens belong to users, experiments and sweeps record their
owner, the audit log

Existing data keeps working: when tokens exist, one admin user named `admin` is created and owns
them all, and every experiment submitted with one of them is owned by `admin`. Experiments
submitted without a token, and all existing sweeps, have no owner: the implicit local admin's.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

import db.models

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", db.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", db.models.UTCDateTime(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=50), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_audit_user_id_users"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audit", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_at"), ["at"], unique=False)

    bind = op.get_bind()
    admin_id = None
    if bind.execute(sa.text("SELECT count(*) FROM tokens")).scalar():
        bind.execute(
            sa.text(
                "INSERT INTO users (name, role, disabled, created_at) "
                "VALUES ('admin', 'admin', :f, :now)"
            ),
            {"f": False, "now": db.models.utcnow().replace(tzinfo=None)},
        )
        admin_id = bind.execute(sa.text("SELECT id FROM users WHERE name = 'admin'")).scalar()

    with op.batch_alter_table("experiments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_experiments_owner_id"), ["owner_id"], unique=False)
        batch_op.create_foreign_key("fk_experiments_owner_id_users", "users", ["owner_id"], ["id"])
    with op.batch_alter_table("sweeps", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_sweeps_owner_id"), ["owner_id"], unique=False)
        batch_op.create_foreign_key("fk_sweeps_owner_id_users", "users", ["owner_id"], ["id"])
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("user_id", sa.Integer(), nullable=True))
    if admin_id is not None:
        bind.execute(sa.text("UPDATE tokens SET user_id = :a"), {"a": admin_id})
        bind.execute(
            sa.text("UPDATE experiments SET owner_id = :a WHERE token_id IS NOT NULL"),
            {"a": admin_id},
        )
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.alter_column("user_id", existing_type=sa.Integer(), nullable=False)
        batch_op.create_index(batch_op.f("ix_tokens_user_id"), ["user_id"], unique=False)
        batch_op.create_foreign_key("fk_tokens_user_id_users", "users", ["user_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.drop_constraint("fk_tokens_user_id_users", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_tokens_user_id"))
        batch_op.drop_column("user_id")
    with op.batch_alter_table("sweeps", schema=None) as batch_op:
        batch_op.drop_constraint("fk_sweeps_owner_id_users", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_sweeps_owner_id"))
        batch_op.drop_column("owner_id")
    with op.batch_alter_table("experiments", schema=None) as batch_op:
        batch_op.drop_constraint("fk_experiments_owner_id_users", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_experiments_owner_id"))
        batch_op.drop_column("owner_id")
    with op.batch_alter_table("audit", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_at"))
    op.drop_table("audit")
    op.drop_table("users")
