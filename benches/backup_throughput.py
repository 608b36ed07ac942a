#!/usr/bin/env python3
"""Throughput of a full backup and of a restore of a volume full of random data, next to
nbdcopy of the same volume to a local file, in one run on one machine.

    benches/backup_throughput.py --tripod target/release/tripod [--gib 1] [--dir /tmp]
                                 [--target DIR_OR_S3_URL]

Starts `tripod serve` on a fresh data directory under --dir, fills a volume through NBD
with nbdcopy from a random file (timed: the write path's own rate, the peer of a restore),
then times (1) nbdcopy of the volume to a local file,
(2) a full backup through the API until it is `available`, (3) an incremental backup with
nothing changed, (4) a restore into a new volume until it is `available`. Prints MiB/s and
the ratio of each to nbdcopy. Needs nbdcopy (libnbd-bin).
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

PASSWORD = "bench-secret"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc):
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"tripod serve exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on {port}")


class Api:
    def __init__(self, base):
        self.base = base
        body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"name": "Default"}, "password": PASSWORD}}},
            "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}}
        req = urllib.request.Request(f"{base}/identity/v3/auth/tokens",
                                     data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req) as r:
            self.token = r.headers["X-Subject-Token"]
            self.project = json.load(r)["token"]["project"]["id"]

    def call(self, method, rest, body=None):
        req = urllib.request.Request(
            f"{self.base}/v3/{self.project}/{rest}", method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"X-Auth-Token": self.token, "Content-Type": "application/json"})
        with urllib.request.urlopen(req) as r:
            text = r.read()
            return json.loads(text) if text else None

    def wait(self, rest, key, status):
        while True:
            v = self.call("GET", rest)[key]
            if v["status"] == status:
                return v
            if v["status"].startswith("error"):
                sys.exit(f"{rest} went to {v['status']}: {v}")
            time.sleep(0.02)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tripod", required=True)
    ap.add_argument("--gib", type=int, default=1)
    ap.add_argument("--dir", default=tempfile.gettempdir())
    ap.add_argument("--target", help="backup target (default: <data-dir>/backups)")
    args = ap.parse_args()
    size = args.gib << 30
    mib = size / (1 << 20)
    work = tempfile.mkdtemp(prefix="tripod-backup-bench-", dir=args.dir)
    data_dir = os.path.join(work, "data")
    api_port, nbd_port = free_port(), free_port()
    cmd = [args.tripod, "serve", "--data-dir", data_dir,
           "--api-listen", f"127.0.0.1:{api_port}", "--nbd-listen", f"127.0.0.1:{nbd_port}"]
    if args.target:
        cmd += ["--backup-target", args.target]
    env = dict(os.environ, TRIPOD_ADMIN_PASSWORD=PASSWORD, RUST_LOG="warn")
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
    try:
        wait_port(api_port, proc)
        wait_port(nbd_port, proc)
        api = Api(f"http://127.0.0.1:{api_port}")
        vol = api.call("POST", "volumes", {"volume": {"size": args.gib}})["volume"]["id"]
        api.wait(f"volumes/{vol}", "volume", "available")
        src = os.path.join(work, "random.raw")
        with open(src, "wb") as f:
            for _ in range(size >> 24):
                f.write(os.urandom(16 << 20))
        uri = f"nbd://127.0.0.1:{nbd_port}/{vol}"
        results = []
        # The write path's own rate, for the restore: a local file into a fresh volume,
        # flushed at the end as a restore is (three copies of the data reach the disk).
        t = time.monotonic()
        subprocess.run(["nbdcopy", "--flush", src, uri], check=True)
        fill = time.monotonic() - t
        os.unlink(src)

        out = os.path.join(work, "copy.raw")
        t = time.monotonic()
        subprocess.run(["nbdcopy", uri, out], check=True)
        results.append(("nbdcopy volume -> local file", time.monotonic() - t))
        os.unlink(out)

        t = time.monotonic()
        b = api.call("POST", "backups", {"backup": {"volume_id": vol}})["backup"]["id"]
        api.wait(f"backups/{b}", "backup", "available")
        results.append(("full backup", time.monotonic() - t))

        t = time.monotonic()
        i = api.call("POST", "backups",
                     {"backup": {"volume_id": vol, "incremental": True}})["backup"]["id"]
        api.wait(f"backups/{i}", "backup", "available")
        results.append(("incremental backup, nothing changed", time.monotonic() - t))

        t = time.monotonic()
        r = api.call("POST", f"backups/{b}/restore",
                     {"restore": {"name": "restored"}})["restore"]["volume_id"]
        api.wait(f"volumes/{r}", "volume", "available")
        results.append(("restore into a new volume", time.monotonic() - t))

        base = results[0][1]
        print(f"{args.gib} GiB of random data, one run; ratio = this / nbdcopy (throughput)")
        for name, secs in results:
            print(f"  {name:40s} {secs:7.2f} s  {mib / secs:8.1f} MiB/s  "
                  f"ratio {base / secs:5.2f}")
        print(f"  {'nbdcopy --flush local file -> fresh volume':40s} {fill:7.2f} s  "
              f"{mib / fill:8.1f} MiB/s  (restore / this: {fill / results[-1][1]:.2f})")
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
