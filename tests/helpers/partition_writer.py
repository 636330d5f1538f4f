#!/usr/bin/env python3
"""The writing "pod" of tests/partition.rs, in a process of its own.

    partition_writer.py DIR

Every 100 ms appends a record to DIR/stream.log and fsyncs it; every 10th
record also writes DIR/rec-<n> (open, write, fsync, close). Prints "ok" on
stdout after every completed record and "error <n> <message>" after a
failed one. Stops when stdin closes or says "stop", then prints "done".

Out of the test process on purpose: a process whose thread holds a file
on a hung FUSE mount cannot start programs (the child's exec closes its
copy of the descriptor, which sends FLUSH to the hung mount and waits).
"""

import os
import sys
import threading
import time


def main():
    directory = sys.argv[1]
    stop = threading.Event()

    def watch_stdin():
        for line in sys.stdin:
            if line.strip() == "stop":
                break
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    log = os.open(os.path.join(directory, "stream.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    n = 0
    while not stop.is_set():
        record = f"record {n:08} {time.time():.3f}\n".encode()
        try:
            os.write(log, record)
            os.fdatasync(log)
            if n % 10 == 0:
                fd = os.open(os.path.join(directory, f"rec-{n:08}"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                try:
                    os.write(fd, record)
                    os.fsync(fd)
                finally:
                    os.close(fd)
            print("ok", flush=True)
        except OSError as error:
            print(f"error {n} {error}", flush=True)
        n += 1
        time.sleep(0.1)
    os.close(log)
    print("done", flush=True)


if __name__ == "__main__":
    main()
