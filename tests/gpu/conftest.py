"""GPU fixtures: the store staged for the device run (env NVFP4_AOT_GPU_STORE, default artifacts/)."""

import os
import secrets
from pathlib import Path

import pytest

STORE = Path(os.environ.get("NVFP4_AOT_GPU_STORE", "artifacts"))


@pytest.fixture(scope="session")
def store():
    from nvfp4_aot.runtime import open_store

    s = open_store(STORE, manifest=os.environ.get("NVFP4_AOT_GPU_MANIFEST"))  # None: every manifest
    s.prime()
    return s


@pytest.fixture
def seed(request):
    """Fresh random data every run; the seed is printed so a failure can be replayed."""
    s = int(os.environ.get("NVFP4_AOT_SEED", secrets.randbelow(1 << 30)))
    print(f"\n[{request.node.name}] seed={s}")
    return s
