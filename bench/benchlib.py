# SPDX-License-Identifier: MIT
"""What the Python benchmarks share: the Release build they measure, and waiting for a port."""
import os
import socket
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def release_binary():
    """Build build-bench/ in Release and return the path of its switchboard."""
    build = os.path.join(ROOT, "build-bench")
    subprocess.run(["cmake", "-S", ROOT, "-B", build, "-DCMAKE_BUILD_TYPE=Release"], check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", build, "-j%d" % os.cpu_count()], check=True,
                   stdout=subprocess.DEVNULL)
    return os.path.join(build, "switchboard")


def wait_port(port):
    """Return once 127.0.0.1:port accepts connections (10 s at most)."""
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("port %d did not open" % port)
