#!/usr/bin/env python3
"""A stand-in for a container using a volume, for the survival tests.

    pod.py DIR NAME

Keeps DIR/NAME open and appends a numbered line to it every 20 ms (fsync
every 25 lines). After an error it closes the file and opens it again by
path, as a resilient application would. Prints one JSON line per event on
stdout: the first error after a good write ("error"), the first good write
after errors ("recovered"). Reads commands on stdin:

    write FILE TEXT   write DIR/FILE with TEXT (open, write, fsync, close)
    read FILE         answer with DIR/FILE's text
    stop              stop writing, read DIR/NAME back, report, exit
"""

import json
import os
import sys
import threading
import time

INTERVAL = 0.02


def say(**event):
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


class Writer(threading.Thread):
    def __init__(self, path):
        super().__init__(daemon=True)
        self.path = path
        self.stop = threading.Event()
        self.written = 0
        self.errors = 0
        self.failing_since = None

    def run(self):
        fd = None
        while not self.stop.is_set():
            try:
                if fd is None:
                    fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                os.write(fd, f"{self.written}\n".encode())
                if self.written % 25 == 0:
                    os.fsync(fd)
                self.written += 1
                if self.failing_since is not None:
                    say(event="recovered", at=time.time(), after_ms=int((time.time() - self.failing_since) * 1000))
                    self.failing_since = None
            except OSError as error:
                self.errors += 1
                if self.failing_since is None:
                    self.failing_since = time.time()
                    say(event="error", at=time.time(), errno=error.errno, message=str(error))
                if fd is not None:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
                    fd = None
            time.sleep(INTERVAL)
        if fd is not None:
            try:
                os.fsync(fd)
                os.close(fd)
            except OSError:
                self.errors += 1


def verify(path, written):
    try:
        with open(path) as f:
            lines = f.read().split("\n")[:-1]
    except OSError as error:
        return {"readable": False, "message": str(error)}
    expected = [str(i) for i in range(written)]
    first_wrong = next((i for i, (a, b) in enumerate(zip(lines, expected)) if a != b), None)
    return {"readable": True, "lines": len(lines), "exact": lines == expected, "first_wrong": first_wrong}


def main():
    directory, name = sys.argv[1], sys.argv[2]
    writer = Writer(os.path.join(directory, name))
    writer.start()
    say(event="started", pid=os.getpid())
    for line in sys.stdin:
        words = line.split(" ", 2)
        command = words[0].strip()
        try:
            if command == "write":
                fd = os.open(os.path.join(directory, words[1]), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.write(fd, words[2].rstrip("\n").encode())
                os.fsync(fd)
                os.close(fd)
                say(event="written", file=words[1])
            elif command == "read":
                with open(os.path.join(directory, words[1].strip())) as f:
                    say(event="read", text=f.read())
            elif command == "stop":
                break
        except OSError as error:
            say(event="failed", command=command, errno=error.errno, message=str(error))
    writer.stop.set()
    writer.join()
    say(event="report", written=writer.written, errors=writer.errors, **verify(writer.path, writer.written))


if __name__ == "__main__":
    main()
