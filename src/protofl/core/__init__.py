"""The vocabulary every layer shares: the typed payloads between server and clients, the
per-round record, the seeding rule, the name registry, and the accuracy statistics (spread
across domains, pooled accuracy, paired comparisons). Nothing here imports another part of
protofl except ``protofl.errors``."""
