"""jobs: leases, the outbox's relay mark, a crop's base and result versions, retry timing; see
docs/library.md § Jobs

Revision ID: 0008
Revises: 0007

Every column is nullable, so the upgrade is instant on both databases. Jobs left ``active`` by a
worker of the previous release have no lease: a new worker's sweep puts them back on the queue
only once they have not moved for a grace (jobs.LEASELESS_GRACE_LEASES leases), in case an old
worker is still running them; ``pending`` ones are not marked relayed and are handed
to the queue again (a duplicate task finds the job claimed and does nothing).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

COLUMNS = (
    ("base_version_id", sa.String(40)),
    ("result_version_id", sa.String(40)),
    ("lease_owner", sa.String(128)),
    ("lease_until", sa.DateTime()),
    ("relayed_at", sa.DateTime()),
    ("run_after", sa.DateTime()),
    ("failing_since", sa.DateTime()),
)


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        for name, type_ in COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))
    op.create_index("ix_jobs_state_lease", "jobs", ["state", "lease_until"])


def downgrade() -> None:
    op.drop_index("ix_jobs_state_lease", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
