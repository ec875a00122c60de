"""Enhanced feature tables: Drain templates, events and sequences with the seed's schemas."""
