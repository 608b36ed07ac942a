#!/usr/bin/env python3
"""Tripod over NBD next to other NBD servers on the same disk, in one run, one client.

Every server gets a fresh 1 GiB image in a directory under --dir (put it on the disk you
want to measure), is prefilled with sequential writes, then runs the same fio job matrix
through fio's `nbd` engine (libnbd: no kernel module). Ratios (Tripod / peer) are what this
prints for reports: absolute figures move with the machine's neighbours, ratios from one
run much less. See benches/nbd/README.md.

Needs fio with the nbd engine (3.37 or newer for fair flush counts), qemu-utils, nbdkit,
optionally nbd-server; python3's standard library only.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

SIZE_GIB = 1

# name: (fio arguments, what the figure is)
JOBS = {
    "durlat_qd1": (["--rw=randwrite", "--bs=4k", "--iodepth=1", "--fsync=1"], "iops"),
    "durtput_qd32": (["--rw=randwrite", "--bs=4k", "--iodepth=32", "--fsync=32"], "iops"),
    "bufw_qd32": (["--rw=randwrite", "--bs=4k", "--iodepth=32"], "iops"),
    "randr_qd1": (["--rw=randread", "--bs=4k", "--iodepth=1"], "iops"),
    "randr_qd32": (["--rw=randread", "--bs=4k", "--iodepth=32"], "iops"),
    "seqw_qd8": (["--rw=write", "--bs=1m", "--iodepth=8"], "mibs"),
    "seqr_qd8": (["--rw=read", "--bs=1m", "--iodepth=8"], "mibs"),
}

PEERS = ["tripod", "tripod-snap", "qemu-quorum3", "qemu-raw-none", "qemu-raw-wb",
         "qemu-qcow2-snap", "nbdkit-file", "nbd-server"]
THREE_COPY = "qemu-quorum3"
# Servers that are Tripod (never a "best single-copy peer"), and the snapshot-per-job peers.
SNAP_PEERS = ("tripod-snap", "qemu-qcow2-snap")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=60.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


def make_image(path):
    with open(path, "wb") as f:
        f.truncate(SIZE_GIB << 30)


class Server:
    """One NBD server on a fresh image; `uri` once started."""

    def __init__(self, name, workdir, args):
        self.name = name
        self.dir = os.path.join(workdir, name)
        self.args = args
        self.proc = None
        self.pids = []
        self.uri = None
        # Tripod: how to reach the admin API (tripod-snap takes a snapshot before each job).
        self.api = None
        # Run before every job (after the prefill): tripod-snap and qemu-qcow2-snap make
        # every job start with all data shared with a snapshot.
        self.before_job = None
        self.after_prefill = None
        self.nodes = []

    def start(self):
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.log = open(os.path.join(self.dir, "server.log"), "wb")
        port = free_port()
        getattr(self, "start_" + self.name.replace("-", "_"))(port)

    def spawn(self, cmd, env=None):
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def image(self, name="img.raw"):
        path = os.path.join(self.dir, name)
        make_image(path)
        return path

    def start_tripod(self, port, binary=None, metadata=None, extra=(), env=None):
        binary = binary or self.args.tripod
        api_port = free_port()
        password = "bench-" + str(os.getpid())
        env = dict(env or os.environ, TRIPOD_ADMIN_PASSWORD=password)
        self.spawn([binary, "serve", "--data-dir", os.path.join(self.dir, "data"),
                    "--api-listen", f"127.0.0.1:{api_port}",
                    "--nbd-listen", f"127.0.0.1:{port}", *extra], env)
        wait_port(api_port, self.proc)
        api = f"http://127.0.0.1:{api_port}"
        auth = {"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": "admin", "domain": {"name": "Default"}, "password": password}}},
            "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}}
        token, body = call(api + "/identity/v3/auth/tokens", auth)
        project = body["token"]["project"]["id"]
        _, body = call(f"{api}/v2/{project}/volumes",
                       {"volume": {"size": SIZE_GIB, "name": "bench",
                                   "metadata": metadata or {}}}, token)
        vol = body["volume"]["id"]
        wait_available(f"{api}/v2/{project}/volumes/{vol}", "volume", token)
        self.api = (api, project, token, vol)
        self.uri = f"nbd://127.0.0.1:{port}/{vol}"

    def start_tripod_old(self, port):
        self.start_tripod(port, self.args.old_tripod)

    def start_tripod_enc(self, port):
        # An encrypted volume (EVS metadata), on the same build.
        self.start_tripod(port, metadata={"__system__encrypted": "1"})

    def start_tripod_snap(self, port):
        # The same build; a snapshot of the volume is taken before every job, so every
        # write job starts with all data shared with a snapshot (copy-on-write).
        self.start_tripod(port)
        self.before_job = self.tripod_snapshot

    def tripod_snapshot(self, job):
        api, project, token, vol = self.api
        _, body = call(f"{api}/v2/{project}/snapshots",
                       {"snapshot": {"volume_id": vol, "force": True, "name": job}}, token)
        snap = body["snapshot"]["id"]
        wait_available(f"{api}/v2/{project}/snapshots/{snap}", "snapshot", token)

    def start_tripod_nodes(self, port, binary=None):
        # The volume's three replicas on three `tripod replica` nodes on loopback, sharing a
        # fresh cluster secret.
        binary = binary or self.args.tripod
        secret = os.urandom(24).hex()
        env = dict(os.environ, TRIPOD_CLUSTER_SECRET=secret)
        extra = []
        for i in range(3):
            node_port = free_port()
            node_dir = os.path.join(self.dir, f"node{i}")
            os.makedirs(node_dir)
            node = subprocess.Popen([binary, "replica", "--dir", node_dir,
                                     "--listen", f"127.0.0.1:{node_port}"],
                                    stdout=self.log, stderr=subprocess.STDOUT, env=env)
            self.nodes.append(node)
            wait_port(node_port, node)
            extra += ["--replica", f"tcp://127.0.0.1:{node_port}"]
        self.start_tripod(port, binary, extra=extra, env=env)

    def start_tripod_old_nodes(self, port):
        self.start_tripod_nodes(port, self.args.old_tripod)

    def start_qemu_qcow2_snap(self, port):
        # qcow2 with an internal snapshot reverted before every job (the server is stopped,
        # the image reverted, the server started again): every job starts from the snapshot.
        self.qcow2 = os.path.join(self.dir, "img.qcow2")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", self.qcow2,
                        f"{SIZE_GIB}G"], check=True)
        self.qcow2_port = port
        self.qcow2_serve()
        self.after_prefill = self.qcow2_take_snapshot
        self.before_job = self.qcow2_revert

    def qcow2_serve(self):
        self.spawn(["qemu-nbd", "-f", "qcow2", "-t", "-x", "vol", "-b", "127.0.0.1",
                    "-p", str(self.qcow2_port), "--cache=writeback", self.qcow2])
        wait_port(self.qcow2_port, self.proc)
        self.uri = f"nbd://127.0.0.1:{self.qcow2_port}/vol"

    def qcow2_stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)

    def qcow2_take_snapshot(self):
        self.qcow2_stop()
        subprocess.run(["qemu-img", "snapshot", "-c", "snap1", self.qcow2], check=True)
        self.qcow2_serve()

    def qcow2_revert(self, _job):
        self.qcow2_stop()
        subprocess.run(["qemu-img", "snapshot", "-a", "snap1", self.qcow2], check=True)
        self.qcow2_serve()

    def start_qemu_raw_none(self, port):
        self.spawn(["qemu-nbd", "-f", "raw", "-t", "-x", "vol", "-b", "127.0.0.1",
                    "-p", str(port), "--cache=none", "--aio=native", self.image()])
        wait_port(port, self.proc)
        self.uri = f"nbd://127.0.0.1:{port}/vol"

    def start_qemu_raw_wb(self, port):
        self.spawn(["qemu-nbd", "-f", "raw", "-t", "-x", "vol", "-b", "127.0.0.1",
                    "-p", str(port), "--cache=writeback", "--aio=threads", self.image()])
        wait_port(port, self.proc)
        self.uri = f"nbd://127.0.0.1:{port}/vol"

    def start_qemu_quorum3(self, port):
        cmd = ["qemu-storage-daemon"]
        for i in range(3):
            path = self.image(f"copy{i}.raw")
            cmd += ["--blockdev", json.dumps({
                "driver": "file", "node-name": f"r{i}", "filename": path,
                "cache": {"direct": True}, "aio": "native"})]
        cmd += ["--blockdev", json.dumps({
                    "driver": "quorum", "node-name": "q", "vote-threshold": 2,
                    "children": ["r0", "r1", "r2"], "read-pattern": "quorum",
                    "rewrite-corrupted": True}),
                "--nbd-server", f"addr.type=inet,addr.host=127.0.0.1,addr.port={port}",
                "--export", "type=nbd,id=e0,node-name=q,name=vol,writable=on"]
        self.spawn(cmd)
        wait_port(port, self.proc)
        self.uri = f"nbd://127.0.0.1:{port}/vol"

    def start_nbdkit_file(self, port):
        self.spawn(["nbdkit", "-f", "-i", "127.0.0.1", "-p", str(port), "-e", "vol",
                    "file", self.image()])
        wait_port(port, self.proc)
        self.uri = f"nbd://127.0.0.1:{port}/vol"

    def start_nbd_server(self, port):
        conf = os.path.join(self.dir, "nbd-server.conf")
        pidfile = os.path.join(self.dir, "nbd-server.pid")
        with open(conf, "w") as f:
            f.write(f"[generic]\nlistenaddr = 127.0.0.1\nport = {port}\n"
                    f"[vol]\nexportname = {self.image()}\nflush = true\nfua = true\n"
                    "trim = true\n")
        # nbd-server always goes to the background: it is stopped through its pid file.
        subprocess.run(["nbd-server", "-C", conf, "-p", pidfile], stdout=self.log,
                       stderr=subprocess.STDOUT, check=True)
        wait_port(port, None)
        with open(pidfile) as f:
            self.pids.append(int(f.read().strip()))
        self.uri = f"nbd://127.0.0.1:{port}/vol"

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for node in self.nodes:
            node.send_signal(signal.SIGTERM)
            try:
                node.wait(30)
            except subprocess.TimeoutExpired:
                node.kill()
                node.wait()
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


def call(url, body, token=None):
    """One JSON request; returns (X-Subject-Token, parsed body)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("X-Auth-Token", token)
    with urllib.request.urlopen(req, timeout=60) as resp:
        return resp.headers.get("X-Subject-Token"), json.loads(resp.read() or b"{}")


def wait_available(url, kind, token):
    """Polls an API resource (`kind`: "volume" or "snapshot") until it is available."""
    for _ in range(600):
        _, body = call(url, None, token)
        if body[kind]["status"] == "available":
            return
        time.sleep(0.1)
    raise RuntimeError(f"a bench {kind} never became available")


def fio(args, extra):
    out = subprocess.run([args.fio, "--output-format=json"] + extra, capture_output=True,
                         text=True)
    if out.returncode != 0:
        raise RuntimeError(f"fio failed: {out.stderr.strip()[:400]}")
    # fio may print notes before the JSON document.
    return json.loads(out.stdout[out.stdout.index("{"):])


def figure(job_result, kind):
    """IOPS or MiB/s of one fio job (reads and writes summed)."""
    r, w = job_result["read"], job_result["write"]
    if kind == "iops":
        return r["iops"] + w["iops"]
    return (r["bw_bytes"] + w["bw_bytes"]) / (1 << 20)


def settle(drop_caches=False):
    """Writes dirty pages out (before every job) and, as root, empties the page cache
    (before every server), so one job's leftovers do not bill the next."""
    os.sync()
    if drop_caches:
        try:
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("3\n")
        except OSError:
            pass


def run_matrix(args, server):
    base = ["--ioengine=nbd", f"--uri={server.uri}", f"--size={SIZE_GIB}g",
            "--direct=0", "--name=job"]
    fio(args, base + ["--rw=write", "--bs=1m", "--iodepth=8", "--end_fsync=1"])
    if server.after_prefill:
        server.after_prefill()
    results = {}
    for job in args.jobs:
        extra, kind = JOBS[job]
        if server.before_job:
            server.before_job(job)
        settle()
        res = fio(args, base + extra + ["--time_based", f"--runtime={args.time}",
                                        "--ramp_time=1", "--randrepeat=0"])
        results[job] = figure(res["jobs"][0], kind)
        print(f"  {server.name:14} {job:13} {results[job]:10.0f} {'IOPS' if kind == 'iops' else 'MiB/s'}",
              flush=True)
    return results


def disk_limit(args):
    """What the disk itself gives a write kept on three files (the slowest of three at once)."""
    d = tempfile.mkdtemp(prefix="limit-", dir=args.dir)
    try:
        files = [os.path.join(d, f"f{i}") for i in range(3)]
        for f in files:
            make_image(f)

        def three(extra):
            cmd = ["--ioengine=libaio", f"--size={SIZE_GIB}g", "--time_based",
                   f"--runtime={args.time}", "--ramp_time=1", "--randrepeat=0"]
            for i, f in enumerate(files):
                cmd += [f"--name=f{i}", f"--filename={f}"] + extra
            return fio(args, cmd)["jobs"]

        limit = {}
        jobs = three(["--rw=randwrite", "--bs=4k", "--iodepth=1", "--direct=1", "--fsync=1"])
        limit["durlat_qd1"] = min(figure(j, "iops") for j in jobs)
        jobs = three(["--rw=randwrite", "--bs=4k", "--iodepth=32", "--direct=1",
                      "--fdatasync=32"])
        limit["durtput_qd32"] = min(figure(j, "iops") for j in jobs)
        one = fio(args, ["--ioengine=libaio", f"--size={SIZE_GIB}g", "--name=seq",
                         f"--filename={files[0]}", "--rw=write", "--bs=1m", "--iodepth=8",
                         "--direct=1", "--time_based", f"--runtime={args.time}"])
        limit["seqw_qd8"] = figure(one["jobs"][0], "mibs") / 3
        return limit
    finally:
        shutil.rmtree(d, ignore_errors=True)


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tripod", default="target/release/tripod", help="tripod binary")
    p.add_argument("--old-tripod", help="a second tripod binary, run as peer tripod-old (A/B)")
    p.add_argument("--fio", default=os.environ.get("FIO", "fio"))
    p.add_argument("--dir", default="/var/tmp/tripod-bench", help="where images live")
    p.add_argument("-t", "--time", type=int, default=10, help="seconds per job")
    p.add_argument("-n", "--rounds", type=int, default=1, help="rounds (medians reported)")
    p.add_argument("-p", "--peers", default=",".join(PEERS), help="comma-separated servers")
    p.add_argument("-j", "--jobs", default=",".join(JOBS), help="comma-separated jobs")
    p.add_argument("--no-limit", action="store_true", help="skip the disk-limit measurement")
    args = p.parse_args()
    args.jobs = [j for j in args.jobs.split(",") if j]
    unknown = [j for j in args.jobs if j not in JOBS]
    if unknown:
        sys.exit(f"unknown jobs {unknown}; known: {list(JOBS)}")
    peers = [x for x in args.peers.split(",") if x]
    if args.old_tripod and not any(p.startswith("tripod-old") for p in peers):
        peers.insert(1, "tripod-old")
    os.makedirs(args.dir, exist_ok=True)
    print(f"fio: {subprocess.run([args.fio, '--version'], capture_output=True, text=True).stdout.strip()}",
          flush=True)

    rounds = {name: {job: [] for job in args.jobs} for name in peers}
    limits = {}
    for n in range(args.rounds):
        print(f"round {n + 1}/{args.rounds}", flush=True)
        for name in peers:
            server = Server(name, args.dir, args)
            try:
                settle(drop_caches=True)
                server.start()
                for job, v in run_matrix(args, server).items():
                    rounds[name][job].append(v)
            except (RuntimeError, FileNotFoundError, subprocess.CalledProcessError) as e:
                print(f"  {name}: skipped ({e})", flush=True)
            finally:
                server.stop()
        if not args.no_limit:
            for job, v in disk_limit(args).items():
                limits.setdefault(job, []).append(v)

    got = {name: {job: median(v) for job, v in jobs.items() if v}
           for name, jobs in rounds.items()}
    got = {name: jobs for name, jobs in got.items() if jobs}
    names = list(got)
    print()
    print("| job | " + " | ".join(names) + (" | 3-copy disk limit |" if limits else " |"))
    print("|---" * (len(names) + 1 + bool(limits)) + "|")
    for job in args.jobs:
        unit = " (MiB/s)" if JOBS[job][1] == "mibs" else ""
        cells = [f"{got[n][job]:.0f}" if job in got[n] else "—" for n in names]
        if limits:
            cells.append(f"{median(limits[job]):.0f}" if job in limits else "—")
        print(f"| {job}{unit} | " + " | ".join(cells) + " |")
    print()
    # Ratio lines for this build, and (with --old-tripod) the same lines for the old build,
    # labelled "before", from the same run.
    for name, tag in (("tripod", ""), ("tripod-old", " before")):
        ours = got.get(name, {})
        for job in args.jobs:
            if job not in ours:
                continue
            single = {n: v[job] for n, v in got.items()
                      if not n.startswith("tripod") and n != THREE_COPY
                      and n not in SNAP_PEERS and job in v}
            if single:
                best = max(single, key=single.get)
                print(f"ratio{tag} {job} tripod/best-peer {ours[job] / single[best]:.2f} (best peer {best})")
            if job in got.get(THREE_COPY, {}):
                print(f"ratio-3copy{tag} {job} tripod/{THREE_COPY} {ours[job] / got[THREE_COPY][job]:.2f}")
            if job in limits:
                print(f"ratio-limit{tag} {job} tripod/disk-limit {ours[job] / median(limits[job]):.2f}")
            if not tag and job in got.get("tripod-old", {}):
                print(f"ratio-ab {job} tripod/tripod-old {ours[job] / got['tripod-old'][job]:.2f}")
            if not tag and job in got.get("tripod-snap", {}) and job in got.get("qemu-qcow2-snap", {}):
                print(f"ratio-snap {job} tripod-snap/qemu-qcow2-snap "
                      f"{got['tripod-snap'][job] / got['qemu-qcow2-snap'][job]:.2f}")
            if not tag and job in got.get("tripod-nodes", {}):
                print(f"ratio-nodes {job} tripod-nodes/tripod {got['tripod-nodes'][job] / ours[job]:.2f}")
            if not tag and job in got.get("tripod-old-nodes", {}) and job in got.get("tripod-nodes", {}):
                print(f"ratio-ab-nodes {job} tripod-nodes/tripod-old-nodes "
                      f"{got['tripod-nodes'][job] / got['tripod-old-nodes'][job]:.2f}")
            if not tag and job in got.get("tripod-enc", {}):
                print(f"ratio-enc {job} tripod-enc/tripod {got['tripod-enc'][job] / ours[job]:.2f}")


if __name__ == "__main__":
    main()
