"""End-to-end test with an unmodified python-socketio client (the agent panel's Python backend stack).

Starts `switchboard dev` (binary from $SWITCHBOARD_BIN, default target/debug/switchboard
relative to the repository root) on a free port with a fresh data dir and a random
secret, connects a sync `socketio.Client` with `auth={"token": ...}`, joins a
conversation with an ack (`client.call`), publishes a message over HTTP and asserts
that `message:new` arrives with that text and offset.
"""

import base64
import hashlib
import hmac
import json
import os
import queue
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import uuid

import requests
import socketio

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
READY_TIMEOUT_S = 20.0
EVENT_TIMEOUT_S = 5.0


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign_jwt(claims: dict, secret: str) -> str:
    """HS256 JWT, minted by hand."""
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode("ascii")
    signature = _b64url(hmac.new(secret.encode(), signing_input, hashlib.sha256).digest())
    return f"{header}.{payload}.{signature}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def binary_path() -> str:
    configured = os.environ.get("SWITCHBOARD_BIN") or os.path.join("target", "debug", "switchboard")
    return os.path.normpath(os.path.join(REPO_ROOT, configured))


class Server:
    """A `switchboard dev` process for one test class."""

    def __init__(self, extra_env=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.secret = secrets.token_hex(24)
        self.data_dir = tempfile.mkdtemp(prefix="switchboard-py-")
        self.log_path = os.path.join(self.data_dir, "server.log")
        bin_path = binary_path()
        if not os.path.exists(bin_path):
            raise RuntimeError(f"switchboard binary not found at {bin_path}: run `cargo build` or set SWITCHBOARD_BIN")
        env = dict(os.environ)
        env.update(
            {
                "RUST_LOG": os.environ.get("RUST_LOG", "info"),
                "SWITCHBOARD_HTTP_ADDR": f"127.0.0.1:{self.port}",
                "SWITCHBOARD_DATA_DIR": os.path.join(self.data_dir, "data"),
                "SWITCHBOARD_JWT_SECRET": self.secret,
            }
        )
        env.update(extra_env or {})
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [bin_path, "dev"], env=env, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        # A pid file beside the data dir lets tests/run end a server an interrupted run left behind.
        self.pid_file = f"{self.data_dir}.pid"
        with open(self.pid_file, "w") as f:
            f.write(str(self.proc.pid))
        self._wait_ready()

    def logs(self) -> str:
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def _wait_ready(self):
        deadline = time.monotonic() + READY_TIMEOUT_S
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = self.logs()
                self.stop()
                raise RuntimeError(f"switchboard dev exited early with {self.proc.returncode}:\n{out}")
            try:
                r = requests.get(f"{self.url}/readyz", timeout=1)
                if r.status_code == 200:
                    return
                last = f"GET /readyz answered {r.status_code}"
            except requests.RequestException as exc:  # not listening yet
                last = str(exc)
            time.sleep(0.05)
        out = self.logs()
        self.stop()
        raise RuntimeError(f"switchboard dev not ready after {READY_TIMEOUT_S}s ({last}):\n{out}")

    def token(self, sub, role, name, **extra) -> str:
        claims = {"sub": sub, "role": role, "name": name, "exp": int(time.time()) + 3600}
        claims.update(extra)
        return sign_jwt(claims, self.secret)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        if os.path.exists(self.pid_file):
            os.remove(self.pid_file)


class PythonSocketIOClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def test_join_with_ack_then_http_message_arrives(self):
        server = self.server
        conversation_id = str(uuid.uuid4())
        customer = "py-customer-1"
        token = server.token(customer, "customer", "Py Customer", conversations=[conversation_id])

        client = socketio.Client(reconnection=False)
        events = queue.Queue()
        connected = threading.Event()

        @client.on("connected")
        def on_connected(data):
            events.put(("connected", data))
            connected.set()

        @client.on("message:new")
        def on_message_new(data):
            events.put(("message:new", data))

        try:
            client.connect(server.url, auth={"token": token}, transports=["websocket"], wait_timeout=5)
            self.assertTrue(connected.wait(EVENT_TIMEOUT_S), "no `connected` event after connect")
            name, hello = events.get_nowait()
            self.assertEqual(name, "connected")
            self.assertEqual(hello["user_id"], customer)

            ack = client.call("join_conversation", {"conversation_id": conversation_id}, timeout=EVENT_TIMEOUT_S)
            self.assertIsInstance(ack, dict, f"join ack: {ack!r}")
            self.assertIs(ack.get("ok"), True, f"join ack: {ack!r}")
            self.assertEqual(ack["conversation_id"], conversation_id)
            self.assertEqual(ack["offset"], 0)
            self.assertEqual(ack["messages"], [])

            service = server.token("py-service", "service", "Py Service")
            text = "hola desde python-socketio"
            resp = requests.post(
                f"{server.url}/api/v1/conversations/{conversation_id}/messages",
                headers={"Authorization": f"Bearer {service}"},
                json={"text": text},
                timeout=5,
            )
            self.assertEqual(resp.status_code, 201, resp.text)
            stored = resp.json()
            self.assertEqual(stored["text"], text)
            self.assertEqual(stored["offset"], 1)

            try:
                name, msg = events.get(timeout=EVENT_TIMEOUT_S)
            except queue.Empty:
                self.fail(f"no message:new within {EVENT_TIMEOUT_S}s\n--- server output ---\n{server.logs()}")
            self.assertEqual(name, "message:new")
            self.assertEqual(msg["text"], text)
            self.assertEqual(msg["offset"], 1)
            self.assertEqual(msg["id"], stored["id"])
            self.assertEqual(msg["conversation_id"], conversation_id)

            # And the client's own send_message gets an ack with the next offset.
            reply = client.call(
                "send_message",
                {"conversation_id": conversation_id, "text": "and back", "client_msg_id": "py-1"},
                timeout=EVENT_TIMEOUT_S,
            )
            self.assertIs(reply.get("ok"), True, f"send ack: {reply!r}")
            self.assertEqual(reply["message"]["offset"], 2)
            self.assertEqual(reply["message"]["source"], "widget")
        finally:
            client.disconnect()


if __name__ == "__main__":
    unittest.main()
