"""The MQTT sink over TLS and with credentials, against a Mosquitto of the test's own: a CA and
a server certificate made with openssl, a password file made with mosquitto_passwd, no
anonymous clients. Credentials the broker refuses are a permanent SinkWriteError (the spool
ends the run with one line); the password shows nowhere.

Without the mosquitto, mosquitto_passwd and openssl programs these tests skip, except under CI
(``CI=true``)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.machine import free_ports
from sinks.base import SinkUnavailableError, SinkWriteError
from sinks.mqtt import IntoMqtt
from sinks.spooled import IntoSpooled
from tests.sinks.test_mqtt import rows

paho = pytest.importorskip("paho.mqtt.client")

SECRET = "tls-pw-Kx3-never-shown"


def run(*argv: str | Path, cwd: Path) -> None:
    subprocess.run([str(a) for a in argv], cwd=cwd, check=True, capture_output=True, timeout=10)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """(port, CA file) of a TLS-only Mosquitto that takes user ``daq`` with SECRET."""
    missing = [p for p in ("mosquitto", "mosquitto_passwd", "openssl") if not shutil.which(p)]
    if missing:
        reason = f"{', '.join(missing)} not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must run the MQTT TLS tests")
        pytest.skip(reason)
    d = tmp_path_factory.mktemp("mosquitto")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    run("openssl", "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
        "-subj", "/CN=bytewax-daq test CA", cwd=d)  # fmt: skip
    run("openssl", "req", *ec, "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=127.0.0.1", cwd=d)  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    sign = ("-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-extfile", "san.ext")
    run("openssl", "x509", "-req", "-in", "server.csr", *sign, "-out", "server.crt", "-days", "1",
        cwd=d)  # fmt: skip
    run("mosquitto_passwd", "-b", "-c", "passwd", "daq", SECRET, cwd=d)
    port = free_ports(1)[0]
    (d / "mosquitto.conf").write_text(
        # As root, mosquitto would switch to its own user, who cannot read the test's files.
        ("user root\n" if os.geteuid() == 0 else "")
        + f"persistence false\nlistener {port} 127.0.0.1\n"
        f"cafile {d / 'ca.crt'}\ncertfile {d / 'server.crt'}\nkeyfile {d / 'server.key'}\n"
        f"allow_anonymous false\npassword_file {d / 'passwd'}\n"
    )
    server = subprocess.Popen(
        ["mosquitto", "-c", str(d / "mosquitto.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    err = server.stderr.read().decode() if server.stderr else ""
                    pytest.fail(f"mosquitto did not start: {err}")
                time.sleep(0.02)
        yield port, d / "ca.crt"
    finally:
        server.terminate()
        server.wait(5)


def test_rows_go_over_tls_with_credentials(broker: tuple[int, Path]) -> None:
    port, ca = broker
    got: list[dict[str, Any]] = []
    ready, done = threading.Event(), threading.Event()
    sub = paho.Client(paho.CallbackAPIVersion.VERSION2)
    sub.tls_set(ca_certs=str(ca))
    sub.username_pw_set("daq", SECRET)
    sub.on_connect = lambda c, *_: c.subscribe("tls/#", 1)
    sub.on_subscribe = lambda *_: ready.set()

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        got.append(json.loads(msg.payload))
        if len(got) == 5:
            done.set()

    sub.on_message = on_message
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    try:
        assert ready.wait(5)
        sink = IntoMqtt(
            f"mqtts://127.0.0.1:{port}", prefix="tls", username="daq", password=SECRET,
            ca_file=str(ca),
        )  # fmt: skip
        part = sink.build_partition(0, 1)
        part.write_batch(rows(5))
        part.close()
        assert done.wait(5)
        assert [r["value"] for r in got] == [r["value"] for r in rows(5)]
    finally:
        sub.disconnect()
        sub.loop_stop()


def test_refused_credentials_fail_for_good_in_one_line(
    broker: tuple[int, Path], tmp_path: Path
) -> None:
    port, ca = broker
    url = f"mqtts://127.0.0.1:{port}"
    wrong = IntoMqtt(url, username="daq", password=SECRET + "x", ca_file=str(ca))
    with pytest.raises(SinkWriteError, match="refused the connection") as info:
        wrong.build_partition(0, 1)
    assert not isinstance(info.value, SinkUnavailableError)
    assert SECRET not in str(info.value)
    lines: list[str] = []
    spooled = IntoSpooled(wrong, tmp_path, "mqtt", on_fatal=lines.append)
    part = spooled.build_partition(0, 1)
    part.close()
    assert len(lines) == 1 and "refused the connection" in lines[0]
    assert "\n" not in lines[0] and SECRET not in lines[0]


def test_a_broker_the_ca_does_not_vouch_for_fails_for_good(broker: tuple[int, Path]) -> None:
    port, _ = broker
    sink = IntoMqtt(f"mqtts://127.0.0.1:{port}", username="daq", password=SECRET)
    with pytest.raises(SinkWriteError, match="CERTIFICATE_VERIFY_FAILED") as info:
        sink.build_partition(0, 1)
    assert not isinstance(info.value, SinkUnavailableError)  # permanent: the run ends
    assert SECRET not in str(info.value)
