"""The nerfacc path's seeding (its sampling itself needs CUDA: tests/test_cuda.py)."""

from __future__ import annotations

import torch


def test_the_global_rng_is_seeded_from_the_run_generator_and_restored():
    """nerfacc's draws come from torch's global RNG: seeded from the run's generator inside the block, so they
    are fixed by the run's seed, and the global state outside is left as it was."""
    from sds.render.nerfacc_path import global_rng_seeded_from

    def draws(seed):
        gen = torch.Generator().manual_seed(seed)
        with global_rng_seeded_from(gen, torch.device("cpu")):
            inside = torch.rand(4)
        return inside, gen.get_state()

    torch.manual_seed(123)
    before = torch.get_rng_state()
    (a, state_a), (b, state_b) = draws(7), draws(7)
    assert torch.equal(a, b) and torch.equal(state_a, state_b)  # same run state: same draws, same generator after
    assert not torch.equal(draws(8)[0], a)
    assert torch.equal(torch.get_rng_state(), before)  # the global RNG is restored
    with global_rng_seeded_from(None, torch.device("cpu")):  # no generator: nothing is reseeded
        assert torch.equal(torch.get_rng_state(), before)
