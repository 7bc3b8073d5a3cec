"""Keep a training process's peak memory near what it really holds: large freed blocks go back to the OS.

    python -c "from psyassist.memory import release_large_frees; print(release_large_frees())"

glibc serves blocks of 128 KiB and more with mmap (returned to the OS at free) until a freed mmapped block
makes it raise that threshold, up to 32 MiB; from then on activation-sized tensors come from the heap, and
what training frees between layers stays in the process.  Measured on the app's adapter job (2 × 2,048
tokens, the default 135M model, CPU, gradient checkpointing): after the forward pass the process held
2.77 GB of which malloc_trim gave back 1.41 GB, and the step's peak RSS was 5.7 GB; with the threshold
fixed at 128 KiB the peak was 2.8 GB (benchmarks/app_train_memory.py has the job's figures).  Fixing the
threshold (mallopt M_MMAP_THRESHOLD, which also turns the dynamic raise off) applies to the whole process
and only to blocks of 128 KiB and more; small allocations are unchanged.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
THRESHOLD = 128 * 1024
_done = False


def release_large_frees(threshold: int = THRESHOLD) -> bool:
    """Fix glibc's mmap threshold (once per process); False where there is no glibc (macOS, Windows, musl)."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = bool(libc.mallopt(M_MMAP_THRESHOLD, int(threshold)))
    except (OSError, AttributeError):
        return False
    _done = ok
    return ok
