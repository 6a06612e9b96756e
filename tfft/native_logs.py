"""Keep TensorFlow's C++ log lines from reaching the user of the `tfft` command.

TensorFlow 2.21 writes them through absl straight to file descriptor 2, before and after any
Python log setting: `I0000 00:00:1796548217.141690 24305 cudart_stub.cc:31] Could not find cuda
drivers` (before absl is initialised, which TensorFlow leaves undone, the time is seconds since
the epoch; `W1206 09:04:40.123456` after),
`W0000 ... jpeg_mem.cc:...] Premature end of JPEG data` for a truncated JPEG, and so on,
and the libjpeg and libpng messages behind them (`Improper call to JPEG library ...`).
`filtered_stderr` puts a pipe in front of descriptor 2 and forwards every line but those.
A fatal line (`F0000 ...`) is forwarded: it says why the process is about to abort.
`TF_CPP_MIN_LOG_LEVEL=0` (or 1) lets them through again.
"""

import contextlib
import os
import re
import sys
import threading

NATIVE = re.compile(
    rb"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|[IWE]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\] "
    # libjpeg and libpng, which TensorFlow's decoders call, print their own complaints.
    rb"|Improper call to JPEG library|Premature end of JPEG|Corrupt JPEG data|Not a JPEG file|Invalid JPEG file"
    rb"|libpng (warning|error))"
)


@contextlib.contextmanager
def filtered_stderr():
    """While active, drop TensorFlow's C++ log lines from file descriptor 2."""
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2") < "2":
        yield
        return
    sys.stderr.flush()
    read, write = os.pipe()
    saved = os.dup(2)
    os.dup2(write, 2)
    os.close(write)

    def pump():
        with os.fdopen(read, "rb", buffering=0) as source:
            pending = b""
            while True:
                chunk = source.read(65536)
                if not chunk:
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                kept = b"".join(line + b"\n" for line in lines if not NATIVE.match(line))
                if kept:
                    os.write(saved, kept)
            if pending and not NATIVE.match(pending):
                os.write(saved, pending)

    thread = threading.Thread(target=pump, name="tfft-stderr", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last writer: the pump reads to the end and stops
        thread.join(timeout=5)
        os.close(saved)
