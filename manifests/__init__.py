# Data-only package: the manifests ship in the wheel so `nvfp4-build compile` finds the default.
