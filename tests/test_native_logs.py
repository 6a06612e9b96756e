"""`tfft.native_logs`: TensorFlow's C++ info, warning and error lines are kept from the
command's stderr; fatal lines and everything else reach the user."""

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import os
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    from tfft.native_logs import filtered_stderr

    with filtered_stderr():
        os.write(2, b"I0000 00:00:1700000000.123456    4242 cudart_stub.cc:31] Could not find cuda drivers\\n")
        os.write(2, b"W0000 00:00:1700000000.123456    4242 jpeg_mem.cc:331] Premature end of JPEG data\\n")
        os.write(2, b"E1206 09:04:40.123456    4242 png_io.cc:88] PNG warning: iCCP: known incorrect sRGB profile\\n")
        os.write(2, b"Corrupt JPEG data: 12 extraneous bytes before marker 0xd9\\n")
        os.write(2, b"error: data.path: no such folder\\n")
        os.write(2, b"F0000 00:00:1700000000.123456    4242 op_kernel.cc:99] Check failed: index < size\\n")
    os.write(2, b"after\\n")
""")


def test_info_warning_and_library_lines_are_dropped_fatal_and_own_lines_kept():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines == [
        "error: data.path: no such folder",
        "F0000 00:00:1700000000.123456    4242 op_kernel.cc:99] Check failed: index < size",
        "after",
    ]
