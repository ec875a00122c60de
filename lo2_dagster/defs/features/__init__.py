"""Enhanced feature tables: Drain templates, events and sequences with the documented schemas
(docs/schemas.md)."""
