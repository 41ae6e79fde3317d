"""nvfp4-aot build side: manifests, content keys, compile workers, the store's write side, CLI."""
