"""list indexes

Indexes for every filter of the public lists, each followed by the list order
(published_at, id), so a filtered page is one ordered index range and a page number an
index-only OFFSET (services.portal); batch pages read (batch_id, status, id); the product
area filter probes (area, product_id). Six existing indexes gain trailing columns.

Revision ID: 53b2877a7b92
Revises: e14a7c2b9d01
Create Date: 2026-12-01 19:23:57.271696

"""
from alembic import op

# revision identifiers, used by Alembic.
revision = '53b2877a7b92'
down_revision = 'e14a7c2b9d01'
branch_labels = None
depends_on = None

LIST_ORDER = ['published_at', 'id']

#: (table, index, columns after this revision, columns before it or None if new)
INDEXES = [
    ('opportunity', 'ix_opportunity_status_published', ['status', *LIST_ORDER], ['status', 'published_at']),
    ('opportunity', 'ix_opportunity_status_batch', ['status', 'batch_id', *LIST_ORDER], None),
    ('opportunity', 'ix_opportunity_status_area', ['status', 'field_area', *LIST_ORDER], None),
    ('opportunity', 'ix_opportunity_status_category', ['status', 'field_category', *LIST_ORDER],
     ['status', 'field_category']),
    ('opportunity', 'ix_opportunity_status_city', ['status', 'region_city', *LIST_ORDER],
     ['status', 'region_city']),
    ('opportunity', 'ix_opportunity_status_county', ['status', 'region_county', *LIST_ORDER], None),
    ('opportunity', 'ix_opportunity_status_tier', ['status', 'tier', *LIST_ORDER], None),
    ('opportunity', 'ix_opportunity_batch_status', ['batch_id', 'status', 'id'], ['batch_id', 'status']),
    ('product', 'ix_product_status_published', ['status', *LIST_ORDER], ['status', 'published_at']),
    ('product', 'ix_product_status_batch', ['status', 'batch_id', *LIST_ORDER], None),
    ('product', 'ix_product_status_maturity', ['status', 'maturity', *LIST_ORDER], ['status', 'maturity']),
    ('product', 'ix_product_status_city', ['status', 'region_city', *LIST_ORDER], ['status', 'region_city']),
    ('product', 'ix_product_status_county', ['status', 'region_county', *LIST_ORDER], None),
    ('product', 'ix_product_batch_status', ['batch_id', 'status', 'id'], ['batch_id', 'status']),
    ('product_field', 'ix_product_field_area', ['area', 'product_id'], ['area']),
]


def upgrade():
    for table, name, columns, before in INDEXES:
        if before is not None:
            op.drop_index(name, table_name=table)
        op.create_index(name, table, columns, unique=False)


def downgrade():
    for table, name, _, before in reversed(INDEXES):
        op.drop_index(name, table_name=table)
        if before is not None:
            op.create_index(name, table, before, unique=False)
