"""Who trains in a round: every client, or a seeded sample (``RunConfig.clients_per_round``),
the same draw in the simulator and on Flower."""

from __future__ import annotations

from protofl.core.seeding import derive_seed, numpy_generator


def participants(count: int, per_round: float) -> int:
    """How many of ``count`` clients train in each round (``per_round`` <= 1 a fraction,
    > 1 a count; at least one, at most all)."""
    wanted = int(per_round) if per_round > 1 else max(1, round(per_round * count))
    return min(wanted, count)


def sample_clients(count: int, per_round: float, seed: int, round_index: int) -> list[int]:
    """The clients that train in ``round_index``: all of them, or a seeded sample without
    replacement of ``participants(count, per_round)``, in federation order. The draw depends
    only on (seed, round), so a resumed run samples exactly as an uninterrupted one."""
    wanted = participants(count, per_round)
    if wanted >= count:
        return list(range(count))
    rng = numpy_generator(derive_seed(seed, "client-sampling", round_index))
    return sorted(int(i) for i in rng.choice(count, size=wanted, replace=False))
