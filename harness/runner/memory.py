"""Peak host memory of the runner process, per repetition (stdlib only)."""

from __future__ import annotations

import resource
import sys
from typing import Optional, Tuple

_STATUS = "/proc/self/status"
_CLEAR_REFS = "/proc/self/clear_refs"


def reset_peak() -> bool:
    """Reset the kernel's RSS high-water mark (VmHWM) for this process; False if not possible."""
    try:
        with open(_CLEAR_REFS, "w") as handle:
            handle.write("5")  # "5" resets the peak RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def _vm_hwm_kb() -> Optional[int]:
    try:
        with open(_STATUS) as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def peak_host_mb(was_reset: bool) -> Tuple[Optional[float], str]:
    """(peak MB, what it covers). Prefers VmHWM reset per repetition; else the lifetime peak."""
    hwm = _vm_hwm_kb()
    if hwm is not None:
        scope = "since the start of this repetition" if was_reset else "since the runner started"
        return hwm / 1024.0, "VmHWM of the runner process (/proc/self/status), %s" % scope
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kb = maxrss / 1024.0 if sys.platform == "darwin" else float(maxrss)  # macOS reports bytes
    return kb / 1024.0, "ru_maxrss of the runner process (getrusage), since the runner started"
