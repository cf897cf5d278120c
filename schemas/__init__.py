"""JSON Schemas for the documents ocikit defines ($id = media type)."""
