#!/usr/bin/python3
"""Scale check for `tripod serve`: many volumes open at once.

Starts a daemon on a fresh data dir, creates N volumes through the admin API, touches each
one through NBD (connect, read a block, write a block, flush, disconnect), and reports the
daemon's thread count and resident memory with all N open; then restarts the daemon and
times how long the API takes to answer; optionally drives M volumes with fio at once and
compares their total with one volume alone.

    python3 benches/scale.py --tripod target/release/tripod -n 1000
    python3 benches/scale.py --tripod target/release/tripod -n 100 --fio /path/to/fio -m 8

Needs python3-libnbd (Debian) for the NBD touches, and fio with its nbd engine for -m.
Prints one `scale KEY VALUE` line per figure. Timing figures are measurements, not tests.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import nbd  # python3-libnbd

API_PORT = 18776
NBD_PORT = 18809
PASSWORD = "scale-check"


def request(method, url, body=None, token=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("X-Auth-Token", token)
    with urllib.request.urlopen(req, timeout=60) as r:
        text = r.read()
        return r.headers, (json.loads(text) if text else None)


def start(binary, data_dir):
    env = dict(os.environ, TRIPOD_ADMIN_PASSWORD=PASSWORD, RUST_LOG="warn")
    log = open(os.path.join(os.path.dirname(data_dir), "serve.log"), "ab")
    proc = subprocess.Popen(
        [binary, "serve", "--data-dir", data_dir,
         "--api-listen", f"127.0.0.1:{API_PORT}", "--nbd-listen", f"127.0.0.1:{NBD_PORT}"],
        env=env, stdout=log, stderr=log)
    began = time.monotonic()
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{API_PORT}/", timeout=1)
        except urllib.error.HTTPError:
            break  # any HTTP answer means the API is up (the version list is a 300)
        except OSError:
            if proc.poll() is not None:
                sys.exit("tripod serve exited; see serve.log")
            time.sleep(0.05)
            continue
        break
    return proc, time.monotonic() - began


def login():
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "domain": {"name": "Default"}, "password": PASSWORD}}},
        "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}}
    headers, doc = request("POST", f"http://127.0.0.1:{API_PORT}/identity/v3/auth/tokens", body)
    return headers["X-Subject-Token"], doc["token"]["project"]["id"]


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return int(out["Threads"]), int(out["VmRSS"].split()[0]) // 1024


def touch(volume):
    h = nbd.NBD()
    h.connect_uri(f"nbd://127.0.0.1:{NBD_PORT}/{volume}")
    h.pread(4096, 0)
    h.pwrite(b"\x5a" * 4096, 4096)
    h.flush()
    h.shutdown()


def fio_total(fio, volumes, seconds):
    """Sum of 4k random-write IOPS (QD8, flush every 32) over one fio job per volume."""
    args = [fio, "--output-format=json", "--ioengine=nbd", "--rw=randwrite", "--bs=4k",
            "--iodepth=8", "--fsync=32", "--size=256m", "--time_based",
            f"--runtime={seconds}", "--group_reporting=0"]
    for i, v in enumerate(volumes):
        args += [f"--name=v{i}", f"--uri=nbd://127.0.0.1:{NBD_PORT}/{v}"]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    jobs = json.loads(out[out.index("{"):])["jobs"]
    return sum(j["write"]["iops"] for j in jobs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tripod", default="target/release/tripod")
    ap.add_argument("-n", type=int, default=1000, help="volumes to create and touch")
    ap.add_argument("-m", type=int, default=0, help="volumes to drive with fio at once")
    ap.add_argument("--fio", default="fio")
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = ap.parse_args()
    binary = os.path.abspath(args.tripod)
    scratch = tempfile.mkdtemp(prefix="tripod-scale-")
    data_dir = os.path.join(scratch, "data")
    proc, _ = start(binary, data_dir)
    try:
        token, project = login()
        base = f"http://127.0.0.1:{API_PORT}/v2/{project}"
        request("PUT", f"{base}/os-quota-sets/{project}",
                {"quota_set": {"volumes": -1, "gigabytes": -1}}, token)
        began = time.monotonic()
        volumes = []
        for i in range(args.n):
            _, doc = request("POST", f"{base}/volumes",
                             {"volume": {"size": 1, "name": f"scale-{i}"}}, token)
            volumes.append(doc["volume"]["id"])
        for v in volumes:
            while request("GET", f"{base}/volumes/{v}", token=token)[1]["volume"]["status"] != "available":
                time.sleep(0.05)
        print(f"scale create_seconds {time.monotonic() - began:.1f}")
        began = time.monotonic()
        for v in volumes:
            touch(v)
        print(f"scale touch_seconds {time.monotonic() - began:.1f}")
        time.sleep(11)  # idle request threads of the async runtime retire after 10 s
        threads, rss = proc_status(proc.pid)
        print(f"scale volumes_open {args.n}")
        print(f"scale threads {threads}")
        print(f"scale rss_mib {rss}")
        if args.m:
            one = fio_total(args.fio, volumes[:1], args.seconds)
            many = fio_total(args.fio, volumes[:args.m], args.seconds)
            print(f"scale fio_one_volume_iops {one:.0f}")
            print(f"scale fio_{args.m}_volumes_total_iops {many:.0f}")
            print(f"scale fio_ratio_many_over_one {many / one:.2f}")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=300)
        proc, up = start(binary, data_dir)
        print(f"scale restart_api_seconds {up:.2f}")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
