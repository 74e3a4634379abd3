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


def compile_c(source, output, pkg_config=()):
    """Compile one C file into output (-O2 -Wall -Wextra -Werror), unless output is newer than
    source; pkg_config names the libraries to link (`pkg-config --cflags --libs`). Returns
    output."""
    if os.path.exists(output) and os.path.getmtime(output) >= os.path.getmtime(source):
        return output
    flags = []
    if pkg_config:
        flags = subprocess.run(["pkg-config", "--cflags", "--libs"] + list(pkg_config),
                               check=True, capture_output=True, text=True).stdout.split()
    os.makedirs(os.path.dirname(output), exist_ok=True)
    tmp = output + ".tmp%d" % os.getpid()
    subprocess.run(["cc", "-O2", "-Wall", "-Wextra", "-Werror", source, "-o", tmp] + flags,
                   check=True)
    os.replace(tmp, output)
    return output


def thread_cpu(pid):
    """{thread id: (name, user + system seconds)} for every thread of pid, from /proc."""
    hz = os.sysconf("SC_CLK_TCK")
    threads = {}
    task = "/proc/%d/task" % pid
    for tid in os.listdir(task):
        try:
            with open("%s/%s/stat" % (task, tid)) as f:
                stat = f.read()
        except OSError:
            continue  # the thread ended meanwhile
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat.rsplit(")", 1)[1].split()
        threads[int(tid)] = (name, (int(fields[11]) + int(fields[12])) / hz)
    return threads


def free_port():
    """A TCP port of 127.0.0.1 that nothing listens on now (other benchmarks may run at the same
    time on the fixed ones)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def started(proc, port):
    """wait_port, then check that proc is the one listening: it is still running."""
    wait_port(port)
    time.sleep(0.2)
    if proc.poll() is not None:
        raise SystemExit("%s exited (%d): is port %d taken?" % (proc.args[0], proc.returncode,
                                                                port))


def wrk(port, conns, script, seconds):
    """wrk -t1 -c<conns> for `seconds` with a Lua script against 127.0.0.1:port: {requests,
    rps, "50%", "99%" (wrk's text), errors (any non-2xx or socket error)}."""
    out = subprocess.run(["wrk", "-t1", "-c%d" % conns, "-d%gs" % seconds, "--latency", "-s",
                          script, "http://127.0.0.1:%d/" % port], capture_output=True,
                         text=True).stdout
    result = {"errors": "Non-2xx" in out or "Socket errors" in out}
    for line in out.splitlines():
        parts = line.split()
        if "requests in" in line:
            result["requests"] = int(parts[0])
        elif line.strip().startswith("Requests/sec"):
            result["rps"] = float(parts[1])
        elif parts[:1] in (["50%"], ["99%"]):
            result[parts[0]] = parts[1]
    return result
