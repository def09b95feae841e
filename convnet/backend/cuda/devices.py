"""Which CUDA GPUs CuPy can use here, and where none, why not: for --gpus, the data loader's
pinned memory and the test suite's GPU skips (one answer for all of them)."""

# The CuPy of each CUDA driver (setup.py's extras; the Makefile picks one the same way).
CUPY_INSTALL = ("pip install -e '.[cuda]' for a CUDA 13 driver, '.[cuda12]' for CUDA 12 "
                "or a Volta GPU (nvidia-smi's header names the driver's CUDA version)")
NO_CUPY = "CuPy is not installed"


def cuda_devices():
    """(count, why none): the CUDA devices CuPy sees, and where it sees none, why not (None
    where it sees some)."""
    try:
        import cupy
    except ImportError:
        return 0, NO_CUPY
    runtime = cupy.cuda.runtime
    try:
        count = runtime.getDeviceCount()
    except Exception as error:   # CuPy's CUDARuntimeError, whatever the driver's fault
        return 0, _why_no_device(cupy, error)
    return count, None if count else "CuPy finds no CUDA device"


def _why_no_device(cupy, error):
    """Where CUDA answers cudaErrorInsufficientDriver both for no driver at all and for one
    older than CuPy's CUDA, the versions tell the two apart (CUDA gives 0 for no driver)."""
    try:
        driver, needed = cupy.cuda.runtime.driverGetVersion(), \
            cupy.cuda.runtime.runtimeGetVersion()
    except Exception:
        driver = needed = None
    if driver == 0:
        return "CuPy is installed but this machine has no NVIDIA driver"
    if driver and needed and driver // 1000 < needed // 1000:
        return (f"CuPy {cupy.__version__} is built for CUDA {needed // 1000}, newer than this "
                f"NVIDIA driver's CUDA {driver // 1000}.{driver % 1000 // 10}: "
                f"{CUPY_INSTALL}")
    return f"CuPy finds no usable GPU ({type(error).__name__}: {error})"
