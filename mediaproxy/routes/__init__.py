"""Falcon resources, one module per family: cdn, attachments, external, internal, ops."""
