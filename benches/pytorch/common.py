"""What the PyTorch comparison scripts share."""
from pathlib import Path


def peak_rss_mib():
    """This process's peak resident memory in MiB (Linux VmHWM; NaN elsewhere)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")
