#!/usr/bin/env python3
"""timed.py RUNS PARALLEL TIMEOUT OUT ERRORS CMD...: runs CMD RUNS times, PARALLEL at once,
each under TIMEOUT seconds (stdin empty, stdout dropped). Appends each successful run's wall
time in microseconds to OUT, the status of each failed one to OUT.fail (124: timeout) and its
stderr to ERRORS. Prints the wall time of the whole series in microseconds.

Each clock runs from just before the spawn (vfork + exec) to the reap, so no wrapper process
(timeout(1), a shell, mktemp) is counted: wrappers cost each command ~2 ms on a small VM, the
same for every engine, which only blurs their ratio.
"""
import subprocess
import sys
import threading
import time


def run_once(cmd, timeout):
    """(microseconds, status, stderr) of one run of cmd."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        _, err = proc.communicate(timeout=timeout)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        rc = 124
    us = int((time.perf_counter() - start) * 1e6)
    return us, (128 - rc if rc < 0 else rc), err


def main() -> int:
    if len(sys.argv) < 7:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    runs, parallel = int(sys.argv[1]), max(1, int(sys.argv[2]))
    timeout, out, errors, cmd = float(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6:]
    results = []
    lock = threading.Lock()
    todo = iter(range(runs))

    def worker():
        while True:
            with lock:
                if next(todo, None) is None:
                    return
            r = run_once(cmd, timeout)
            with lock:
                results.append(r)

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(min(parallel, runs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = int((time.perf_counter() - start) * 1e6)
    with open(out, "a") as ok, open(out + ".fail", "a") as bad, open(errors, "ab") as log:
        for us, rc, err in results:
            if rc == 0:
                ok.write(f"{us}\n")
            else:
                bad.write(f"{rc}\n")
                note = " (timeout)" if rc == 124 else ""
                log.write(f"--- rc={rc}{note} after {us // 1000} ms: {' '.join(cmd)}\n".encode())
                log.write(err[:2000])
    print(total)
    return 0


if __name__ == "__main__":
    sys.exit(main())
