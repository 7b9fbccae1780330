"""What happens between the clients and the server in every round, whatever the algorithm:
which clients take part (participation), what a client adds to its prototypes before they
leave (privacy), what the server checks on arrival (screening), how weights are combined
(aggregation: mean, median, trimmed mean), and whether the run looks collapsed (health).
The round loops (``protofl.sim`` and ``protofl.flower``) use these; the algorithms build on
the aggregation rules."""
