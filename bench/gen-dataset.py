#!/usr/bin/env python3
"""Benchmark dataset for the mover (deterministic).

    gen-dataset.py create DIR   ~1 GiB: a large incompressible file, a large compressible log,
                                ~20,000 small files of 1-64 KiB (half compressible), symlinks,
                                empty directories.
    gen-dataset.py mutate DIR   ~1% change: edits in place, a shift (bytes inserted in the
                                middle of large files), an append, deletions and additions.
"""
import os
import random
import sys

MiB = 1 << 20
WORDS = ("request served user session cache miss hit ottawa quebec montreal permit "
         "dossier citizen record status pending approved rejected queue worker").split()


def text(rng, n):
    out = []
    size = 0
    i = 0
    while size < n:
        line = "2026-11-%02dT%02d:%02d:%02dZ INFO %s %s id=%d latency_ms=%d\n" % (
            rng.randint(1, 28), rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59),
            rng.choice(WORDS), rng.choice(WORDS), rng.randint(0, 10**9), rng.randint(0, 5000))
        out.append(line)
        size += len(line)
        i += 1
    return "".join(out).encode()[:n]


def noise(rng, n):
    return b"".join(rng.randbytes(min(MiB, n - i)) for i in range(0, n, MiB))


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def create(root):
    rng = random.Random(20261129)
    write(os.path.join(root, "media/archive.bin"), noise(rng, 256 * MiB))
    # Build the log from 4 MiB of text repeated with variations, to keep generation fast.
    block = text(rng, 4 * MiB)
    os.makedirs(os.path.join(root, "logs"), exist_ok=True)
    with open(os.path.join(root, "logs/app.log"), "wb") as f:
        for i in range(48):
            f.write(block.replace(b"INFO", b"W%03d" % i))
    n = 0
    for d in range(200):
        for k in range(100):
            size = rng.randint(1024, 64 * 1024)
            data = rng.randbytes(size) if (n % 2 == 0) else text(rng, size)
            write(os.path.join(root, "records/%03d/r%05d.dat" % (d, n)), data)
            n += 1
    for i in range(200):
        os.makedirs(os.path.join(root, "empty/e%03d/inner" % i), exist_ok=True)
    os.makedirs(os.path.join(root, "links"), exist_ok=True)
    for i in range(200):
        os.symlink("../records/%03d/r%05d.dat" % (i, i * 100), os.path.join(root, "links/l%03d" % i))
    os.symlink("logs/app.log", os.path.join(root, "current.log"))


def mutate(root):
    rng = random.Random(42)
    # Edit in place: 16 scattered 4 KiB edits in the large binary file.
    p = os.path.join(root, "media/archive.bin")
    with open(p, "r+b") as f:
        size = os.path.getsize(p)
        for _ in range(16):
            f.seek(rng.randrange(0, size - 4096))
            f.write(rng.randbytes(4096))
    # Shift: insert bytes in the middle of the log (everything after moves).
    p = os.path.join(root, "logs/app.log")
    with open(p, "rb") as f:
        data = f.read()
    mid = len(data) // 2
    data = data[:mid] + b"inserted line that shifts the rest of the file\n" + data[mid:]
    # Append: 4 MiB of new log lines.
    data += text(rng, 4 * MiB)
    write(p, data)
    # Edit 100 small files, delete 100, add 100.
    files = sorted(os.path.join(dp, f) for dp, _, fs in os.walk(os.path.join(root, "records")) for f in fs)
    rng.shuffle(files)
    for p in files[:100]:
        with open(p, "r+b") as f:
            f.seek(0)
            f.write(b"edited!")
    for p in files[100:200]:
        os.remove(p)
    for i in range(100):
        size = rng.randint(1024, 64 * 1024)
        write(os.path.join(root, "records/new/n%03d.dat" % i), rng.randbytes(size) if i % 2 else text(rng, size))


if __name__ == "__main__":
    cmd, root = sys.argv[1], sys.argv[2]
    {"create": create, "mutate": mutate}[cmd](root)
