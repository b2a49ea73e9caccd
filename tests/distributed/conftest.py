"""One Ray cluster for the whole test session (starting one takes ~10 s): small, no
dashboard, a modest object store. ShardedBank uses a running Ray, so every test and the
module doctests share it."""

import pytest
import ray  # in the test extra: a missing Ray fails here rather than skipping


@pytest.fixture(scope="session", autouse=True)
def ray_cluster():
    if not ray.is_initialized():
        ray.init(num_cpus=2, object_store_memory=200 * 2**20, include_dashboard=False,
                 log_to_driver=False)
    yield
