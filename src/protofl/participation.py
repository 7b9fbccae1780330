"""Who trains in a round: every client, or a seeded sample (``RunConfig.clients_per_round``),
the same draw in the simulator and on Flower."""

from __future__ import annotations

from protofl.seeding import derive_seed, numpy_generator


def sample_clients(count: int, per_round: float, seed: int, round_index: int) -> list[int]:
    """The clients that train in ``round_index``: all of them, or a seeded sample without
    replacement (``per_round`` <= 1 a fraction, > 1 a count), in federation order. The draw
    depends only on (seed, round), so a resumed run samples exactly as an uninterrupted one."""
    wanted = int(per_round) if per_round > 1 else max(1, round(per_round * count))
    if wanted >= count:
        return list(range(count))
    rng = numpy_generator(derive_seed(seed, "client-sampling", round_index))
    return sorted(int(i) for i in rng.choice(count, size=wanted, replace=False))
