"""w4a16 families' weight layout (production entry point): quack's nvfp4 layout, one prepared
copy for our kernels and quack's (kernels/quack_w4a16/layout.py); prepare.py documents how our
kernels address it and replays their decode on the CPU."""

from ..quack_w4a16.layout import prepare_weights, unprepare_weights

__all__ = ["prepare_weights", "unprepare_weights"]
