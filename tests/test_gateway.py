"""The FastAPI gateway as users meet it: a real `perf gateway` process (or uvicorn on the app's
import path) on a free loopback port, in front of a real Triton, spoken to over HTTP by httpx."""

from __future__ import annotations

import ipaddress
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest
from tritonclient.grpc import service_pb2

from perf import host
from perf.gateway.process import GatewayProcess
from perf.gateway.settings import Settings
from perf.gateway.triton import infer_request, plan_calls
from perf.images import CLASSES, encode, read_and_pad_images, synthetic_image, synthetic_set
from perf.server import EmbeddedServer

from .conftest import perf_cli, running_triton

MODEL = "ensemble_model"
JPEG = "image/jpeg"


class Gateway(GatewayProcess):
    """A running gateway, with the calls the tests make."""

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=300)

    def predict(self, uploads: list[tuple[str, bytes]], **params: object) -> httpx.Response:
        with self.client() as client:
            return client.post("/predict", files=as_files(uploads), params=params)


def as_files(uploads: list[tuple[str, bytes]]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (name, data, JPEG)) for name, data in uploads]


@pytest.fixture(scope="module")
def gateway(server: EmbeddedServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """Default settings, in front of the shared Triton."""
    with Gateway.perf(server.grpc_url, tmp_path_factory.mktemp("gateway") / "gateway.log") as running_gateway:
        yield running_gateway


@pytest.fixture(scope="module")
def small_gateway(server: EmbeddedServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """Limits small enough to pass with a few test files: 1 MiB a file, 3 MiB a request, 10 files."""
    log = tmp_path_factory.mktemp("small") / "gateway.log"
    flags = ("--max-file-mb", "1", "--max-request-mb", "3", "--max-files", "10")
    with Gateway.perf(server.grpc_url, log, *flags) as running_gateway:
        yield running_gateway


@pytest.fixture(scope="module")
def own_triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """A Triton of the tests' own, to stop, hang and unload models on without disturbing others."""
    yield from running_triton(tmp_path_factory, "own-triton")


@pytest.fixture(scope="module")
def faults_gateway(own_triton: EmbeddedServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """In front of ``own_triton``, with a 3 s timeout so a hung Triton is found out quickly."""
    log = tmp_path_factory.mktemp("faults") / "gateway.log"
    with Gateway.perf(own_triton.grpc_url, log, "--timeout", "3") as running_gateway:
        yield running_gateway


def mixed_images(count: int, seed: int) -> tuple[list[bytes], list[int]]:
    """JPEGs and PNGs of several sizes in a shuffled class order: files of very different lengths,
    so the gateway's grouping by size reorders them internally."""
    rng = np.random.default_rng(seed)
    truth = [int(c) for c in rng.integers(0, len(CLASSES), count)]
    shapes = [(120, 160, ".jpg"), (480, 640, ".jpg"), (200, 200, ".png"), (1080, 1920, ".jpg")]
    blobs = []
    for index, label in enumerate(truth):
        height, width, fmt = shapes[index % len(shapes)]
        blobs.append(encode(synthetic_image(label, rng, height, width), fmt))
    return blobs, truth


def ensemble_calls(server: EmbeddedServer) -> tuple[int, int, int]:
    """Triton's counts of successful calls to the ensemble, of images in them, and of failed
    calls, once settled: Triton counts a call just after answering it."""

    def read() -> tuple[int, int, int]:
        stats = server.statistics(MODEL)[0]
        calls = stats["inference_stats"]
        return (
            int(calls["success"].get("count", 0)),
            int(stats.get("inference_count", 0)),
            int(calls["fail"].get("count", 0)),
        )

    counts = read()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(0.5)
        previous, counts = counts, read()
        if counts == previous:
            break
    return counts


def metric(gateway: Gateway, name: str) -> float:
    """One unlabelled value from the gateway's /metrics."""
    with gateway.client() as client:
        lines = client.get("/metrics").text.splitlines()
    return float(next(line for line in lines if line.startswith(name + " ")).split()[-1])


def assert_serves(gateway: Gateway) -> None:
    """A good request still gets its answer (a refusal disturbed nothing)."""
    blobs, truth = synthetic_set(3, seed=11)
    response = gateway.predict([(f"ok{i}.jpg", blob) for i, blob in enumerate(blobs)])
    assert response.status_code == 200, response.text
    assert [p["index"] for p in response.json()["predictions"]] == truth


# --- what a user gets ---------------------------------------------------------------------------------------------


def test_images_of_known_classes_get_their_labels_in_upload_order(gateway: Gateway, labels: list[str]) -> None:
    blobs, truth = mixed_images(40, seed=424242)
    names = [f"{i:02d}-{CLASSES[label]}" for i, label in enumerate(truth)]
    response = gateway.predict(list(zip(names, blobs, strict=True)), top_k=2)
    assert response.status_code == 200, response.text
    body = response.json()
    predictions = body["predictions"]
    assert [p["file"] for p in predictions] == names
    predicted = [p["index"] for p in predictions]
    accuracy = np.mean(np.array(predicted) == np.array(truth))
    assert accuracy >= 0.95, list(zip(predicted, truth, strict=True))
    for p in predictions:
        assert p["label"] == labels[p["index"]]
        assert list(p["probabilities"]) == labels
        assert abs(sum(p["probabilities"].values()) - 1) < 1e-3
        assert p["probability"] == max(p["probabilities"].values())
        assert len(p["top_k"]) == 2
        assert p["top_k"][0] == {"index": p["index"], "label": p["label"], "probability": p["probability"]}
        assert p["top_k"][0]["probability"] >= p["top_k"][1]["probability"]
    assert body["model"] == MODEL
    assert 0 < body["timing"]["triton_ms"] <= body["timing"]["total_ms"]


def test_the_deployment_guides_client_as_the_readme_corrects_it(gateway: Gateway, tmp_path: Path) -> None:
    """The README's snippet, run as a user runs it, the port moved to this test's gateway."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("### The deployment guide's client", 1)[1]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert 'requests.post("http://localhost:8080/predict"' in snippet, "the one change: the gateway's port"
    (tmp_path / "sample.jpg").write_bytes(encode(synthetic_image(0, np.random.default_rng(0))))
    script = snippet.replace("localhost:8080", f"127.0.0.1:{gateway.port}")
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "'predictions'" in out.stdout and "'file': 'sample.jpg'" in out.stdout, out.stdout


def test_a_thousand_files_in_one_request_are_split_into_calls_of_max_batch_size(
    gateway: Gateway, server: EmbeddedServer
) -> None:
    blobs, truth = synthetic_set(1000, seed=1000, height=120, width=160)
    names = [f"{i:04d}.jpg" for i in range(1000)]
    calls_before, images_before, _ = ensemble_calls(server)
    response = gateway.predict(list(zip(names, blobs, strict=True)))
    assert response.status_code == 200, response.text[:2000]
    predictions = response.json()["predictions"]
    assert [p["file"] for p in predictions] == names
    accuracy = np.mean([p["index"] == t for p, t in zip(predictions, truth, strict=True)])
    assert accuracy >= 0.9, accuracy
    calls_after, images_after, _ = ensemble_calls(server)
    assert images_after - images_before == 1000
    assert calls_after - calls_before == math.ceil(1000 / 64)  # the ensemble's max_batch_size


def test_health_says_triton_is_live_and_the_model_ready(gateway: Gateway, server: EmbeddedServer) -> None:
    with gateway.client() as client:
        response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {
        "gateway": "up", "triton": "live", "model": "ready", "model_name": MODEL, "triton_url": server.grpc_url,
    }  # fmt: skip


def test_the_gateway_serves_on_uvloop_and_httptools_and_says_so(gateway: Gateway) -> None:
    assert "uvicorn with uvloop and httptools" in " ".join(gateway.log_path.read_text().split())
    libraries = " ".join(m.path for m in psutil.Process(gateway.proc.pid).memory_maps())
    assert "/uvloop/loop." in libraries and "/httptools/parser/parser." in libraries


def test_a_log_line_per_request_only_with_access_log(gateway: Gateway, server: EmbeddedServer, tmp_path: Path) -> None:
    blobs, _ = synthetic_set(1, seed=21)
    assert gateway.predict([("a.jpg", blobs[0])]).status_code == 200
    with Gateway.perf(server.grpc_url, tmp_path / "gateway.log", "--access-log") as logging_gateway:
        assert logging_gateway.predict([("a.jpg", blobs[0])]).status_code == 200
        logged = logging_gateway.log_path.read_text()
    assert '"POST /predict HTTP/1.1" 200' in logged
    assert "POST /predict" not in gateway.log_path.read_text()


def test_the_gateway_listens_on_loopback_only_by_default(gateway: Gateway) -> None:
    listening = [c.laddr for c in psutil.Process(gateway.proc.pid).net_connections() if c.status == "LISTEN"]
    assert listening
    assert all(ipaddress.ip_address(address.ip).is_loopback for address in listening), listening


def test_metrics_count_requests_errors_and_triton_time(gateway: Gateway) -> None:
    blobs, _ = synthetic_set(2, seed=5)
    with gateway.client() as client:
        assert client.post("/predict", files=as_files([("a.jpg", blobs[0]), ("b.jpg", blobs[1])])).status_code == 200
        assert client.post("/predict", files=as_files([("notes.txt", b"hello")])).status_code == 400
        text = client.get("/metrics").text
    assert 'gateway_requests_total{path="/predict",status="200"}' in text
    assert 'gateway_requests_total{path="/predict",status="400"}' in text
    assert 'gateway_errors_total{reason="not_an_image"}' in text
    assert 'gateway_request_seconds_bucket{le="0.1",path="/predict"}' in text
    assert metric(gateway, "gateway_triton_seconds_count") >= 1
    assert metric(gateway, "gateway_images_total") >= 2


def test_concurrent_clients_each_get_their_own_answers(gateway: Gateway) -> None:
    def client_session(seed: int) -> list[tuple[list[str], list[int], list[str], list[int]]]:
        seen = []
        with gateway.client() as client:
            for round_ in range(3):
                blobs, truth = mixed_images(6, seed=seed * 10 + round_)
                names = [f"client{seed}-round{round_}-{i}.jpg" for i in range(len(blobs))]
                response = client.post("/predict", files=as_files(list(zip(names, blobs, strict=True))))
                assert response.status_code == 200, response.text
                predictions = response.json()["predictions"]
                seen.append((names, truth, [p["file"] for p in predictions], [p["index"] for p in predictions]))
        return seen

    with ThreadPoolExecutor(6) as pool:
        sessions = list(pool.map(client_session, range(6)))
    right = total = 0
    for session in sessions:
        for names, truth, files, predicted in session:
            assert files == names
            right += sum(p == t for p, t in zip(predicted, truth, strict=True))
            total += len(truth)
    assert right / total >= 0.95, (right, total)


# --- bad input: a clear JSON error, and nothing else disturbed --------------------------------------------------------


def test_a_request_without_files_is_refused_with_422(gateway: Gateway) -> None:
    with gateway.client() as client:
        other_field = client.post("/predict", files={"image": ("a.jpg", b"\xff\xd8\xff", JPEG)})
        no_body = client.post("/predict")
    for response in (other_field, no_body):
        assert response.status_code == 422
        assert response.json()["reason"] == "no_files"
        assert "multipart" in response.json()["detail"] and "'files'" in response.json()["detail"]
    assert_serves(gateway)


@pytest.mark.parametrize(
    ("content_type", "body", "detail"),
    [
        ("multipart/form-data", b"--x\r\n", "the multipart/form-data content type has no boundary"),
        (
            "multipart/form-data; boundary=x",
            b'--x\r\nContent-Disposition: form-data; name="files"; filename="a.jpg"\r\n\r\n\xff\xd8\xff',
            "the multipart body ended before its closing boundary",
        ),
        ("multipart/form-data; boundary=x", b"no boundary here", "the body is not valid multipart/form-data: "),
    ],
    ids=["no-boundary", "cut-short", "garbage"],
)
def test_a_malformed_multipart_body_is_refused_with_400(
    gateway: Gateway, content_type: str, body: bytes, detail: str
) -> None:
    with gateway.client() as client:
        response = client.post("/predict", content=body, headers={"content-type": content_type})
    assert response.status_code == 400
    assert response.json()["reason"] == "bad_multipart"
    assert response.json()["detail"].startswith(detail)


def test_more_than_1000_files_are_refused_with_413(gateway: Gateway, server: EmbeddedServer) -> None:
    blob = synthetic_set(1, seed=2, height=60, width=80)[0][0]
    calls_before = ensemble_calls(server)
    response = gateway.predict([(f"{i}.jpg", blob) for i in range(1001)])
    assert response.status_code == 413
    assert response.json() == {
        "detail": "more than 1000 files in one request: send them in parts",
        "reason": "too_many_files",
    }
    assert ensemble_calls(server) == calls_before
    assert_serves(gateway)


def test_a_file_over_the_size_limit_is_refused_with_413_naming_it(small_gateway: Gateway) -> None:
    blobs, _ = synthetic_set(1, seed=3)
    big = b"\xff\xd8\xff" + bytes(int(1.5 * 2**20))
    response = small_gateway.predict([("small.jpg", blobs[0]), ("big.jpg", big)])
    assert response.status_code == 413
    assert response.json()["reason"] == "file_too_large"
    assert response.json()["detail"] == "file 2 ('big.jpg') is larger than the limit of 1 MiB"
    assert_serves(small_gateway)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_request_over_the_total_limit_is_refused_with_413(small_gateway: Gateway, chunked: bool) -> None:
    # Four files each under the 1 MiB file limit, together over the 3 MiB request limit. With a
    # Content-Length the gateway refuses at once; sent in chunks, it counts the bytes arriving.
    parts = as_files([(f"{i}.jpg", b"\xff\xd8\xff" + bytes(900 * 1024)) for i in range(4)])
    encoded = httpx.Request("POST", small_gateway.url, files=parts)
    body = encoded.read()
    content = (body[i : i + 65536] for i in range(0, len(body), 65536)) if chunked else body
    with small_gateway.client() as client:
        response = client.post("/predict", content=content, headers={"content-type": encoded.headers["content-type"]})
    assert response.status_code == 413
    assert response.json() == {"detail": "the request is larger than the limit of 3 MiB", "reason": "request_too_large"}
    assert_serves(small_gateway)


def test_files_over_the_configured_count_are_refused_with_413(small_gateway: Gateway) -> None:
    blob = synthetic_set(1, seed=4, height=60, width=80)[0][0]
    response = small_gateway.predict([(f"{i}.jpg", blob) for i in range(11)])
    assert response.status_code == 413
    assert response.json()["detail"] == "more than 10 files in one request: send them in parts"


def test_files_that_are_not_images_are_refused_with_400_naming_them_before_triton_is_called(
    gateway: Gateway, server: EmbeddedServer
) -> None:
    blobs, _ = synthetic_set(2, seed=6)
    calls_before = ensemble_calls(server)
    uploads = [("cat.jpg", blobs[0]), ("notes.txt", b"this is not an image"), ("dog.jpg", blobs[1]), ("empty.png", b"")]
    response = gateway.predict(uploads)
    assert response.status_code == 400
    assert response.json() == {
        "detail": "not a decodable JPEG or PNG image: file 2 ('notes.txt'), file 4 ('empty.png')",
        "reason": "not_an_image",
        "files": [{"position": 2, "file": "notes.txt"}, {"position": 4, "file": "empty.png"}],
    }
    assert ensemble_calls(server) == calls_before, "Triton saw the request"
    assert_serves(gateway)


def test_a_damaged_image_is_refused_with_400_naming_it_after_triton_refuses_its_call(
    gateway: Gateway, server: EmbeddedServer
) -> None:
    # A JPEG header followed by noise starts like a JPEG, so only decoding finds it out: Triton's
    # preprocessor refuses the call, and the gateway decodes that call's files to name the damaged one.
    blobs, _ = synthetic_set(3, seed=7)
    damaged = blobs[1][:20] + bytes(range(256)) * 8
    failed_before = ensemble_calls(server)[2]
    response = gateway.predict([("a.jpg", blobs[0]), ("cut.jpg", damaged), ("c.jpg", blobs[2])])
    assert response.status_code == 400
    assert response.json()["detail"] == "not a decodable JPEG or PNG image: file 2 ('cut.jpg')"
    assert ensemble_calls(server)[2] > failed_before, "Triton saw the damaged file"
    assert_serves(gateway)


@pytest.mark.parametrize("top_k", ["6", "0", "two", "2.5", ""])
def test_a_top_k_that_is_not_a_class_count_is_refused_with_422(gateway: Gateway, top_k: str) -> None:
    blobs, _ = synthetic_set(1, seed=8)
    response = gateway.predict([("a.jpg", blobs[0])], top_k=top_k)
    assert response.status_code == 422
    assert response.json() == {
        "detail": f"top_k must be a whole number from 1 to 5, not {top_k!r}",
        "reason": "bad_top_k",
    }


def test_the_openapi_schema_documents_top_k_and_the_upload(gateway: Gateway) -> None:
    with gateway.client() as client:
        predict = client.get("/openapi.json").json()["paths"]["/predict"]["post"]
    assert [(p["name"], p["in"], p["schema"]["default"]) for p in predict["parameters"]] == [("top_k", "query", 3)]
    assert "files" in predict["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]


def test_labels_that_do_not_match_the_model_give_502_naming_both(server: EmbeddedServer, tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\nbird\n")
    blobs, _ = synthetic_set(1, seed=14)
    with Gateway.perf(server.grpc_url, tmp_path / "gateway.log", "--labels", str(labels)) as wrong_labels:
        response = wrong_labels.predict([("a.jpg", blobs[0])])
    assert response.status_code == 502
    assert response.json() == {
        "detail": f"model '{MODEL}' returned 5 scores per image for 3 labels in {labels}",
        "reason": "labels_mismatch",
    }


# --- Triton in trouble: 503 or 504 with the reason, within the timeout, then recovery ------------------------------


def test_triton_stopped_gives_503_then_the_gateway_recovers_when_it_starts_again(
    faults_gateway: Gateway, own_triton: EmbeddedServer
) -> None:
    assert_serves(faults_gateway)
    blobs, _ = synthetic_set(2, seed=9)
    uploads = [("a.jpg", blobs[0]), ("b.jpg", blobs[1])]
    own_triton.stop()
    try:
        retries = metric(faults_gateway, "gateway_triton_retries_total")
        started = time.monotonic()
        response = faults_gateway.predict(uploads)
        assert response.status_code == 503
        assert response.json()["reason"] == "triton_unavailable"
        assert response.json()["detail"].startswith(f"Triton at {own_triton.grpc_url} is unavailable: ")
        assert time.monotonic() - started < 30, "a refused connection must not wait out the timeout"
        assert metric(faults_gateway, "gateway_triton_retries_total") == retries + 2, "two retries, by default"
        with faults_gateway.client() as client:
            health = client.get("/health")
        assert health.status_code == 503
        assert health.json()["gateway"] == "up" and health.json()["triton"] == "down"
    finally:
        own_triton.start()
    deadline = time.monotonic() + 60
    while (response := faults_gateway.predict(uploads)).status_code != 200:
        assert response.status_code == 503, response.text
        assert time.monotonic() < deadline, "the gateway did not recover after Triton came back"
        time.sleep(0.5)
    assert [p["file"] for p in response.json()["predictions"]] == ["a.jpg", "b.jpg"]


def test_a_model_that_is_not_ready_gives_503_naming_it(faults_gateway: Gateway, own_triton: EmbeddedServer) -> None:
    blobs, _ = synthetic_set(1, seed=10)
    with own_triton.client() as triton:
        triton.unload_model(MODEL)
    try:
        response = faults_gateway.predict([("a.jpg", blobs[0])])
        assert response.status_code == 503
        assert response.json()["reason"] == "model_not_ready"
        assert response.json()["detail"].startswith(f"model '{MODEL}' is not ready on Triton at {own_triton.grpc_url}")
        with faults_gateway.client() as client:
            health = client.get("/health")
        assert health.status_code == 503
        assert health.json()["model"] == "not ready"
    finally:
        own_triton.load_model(MODEL)
    assert_serves(faults_gateway)


def test_a_hung_triton_gives_504_within_the_timeout(faults_gateway: Gateway, own_triton: EmbeddedServer) -> None:
    # SIGSTOP freezes the real server: its sockets still accept, nothing answers.
    assert_serves(faults_gateway)
    blobs, _ = synthetic_set(1, seed=12)
    assert own_triton.pid is not None
    os.kill(own_triton.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        response = faults_gateway.predict([("a.jpg", blobs[0])])
        waited = time.monotonic() - started
    finally:
        os.kill(own_triton.pid, signal.SIGCONT)
    assert response.status_code == 504
    assert response.json() == {
        "detail": f"Triton at {own_triton.grpc_url} did not answer within 3 s",
        "reason": "timeout",
    }
    assert 3 <= waited < 30, waited
    assert_serves(faults_gateway)


# --- how it is started and configured -----------------------------------------------------------------------------


def test_uvicorn_on_the_import_path_reads_its_settings_from_the_environment(
    server: EmbeddedServer, tmp_path: Path
) -> None:
    port = host.free_ports(1)[0]
    env = {**os.environ, "PERF_GATEWAY_TRITON_URL": server.grpc_url, "PERF_GATEWAY_MAX_FILES": "2"}
    argv = [sys.executable, "-m", "uvicorn", "perf.gateway.app:app", "--port", str(port)]
    blob = synthetic_set(1, seed=13, height=60, width=80)[0][0]
    with Gateway(argv, port, tmp_path / "uvicorn.log", env) as uvicorn_gateway:
        with uvicorn_gateway.client() as client:
            assert client.get("/health").status_code == 200
        assert uvicorn_gateway.predict([("a.jpg", blob)] * 2).status_code == 200
        response = uvicorn_gateway.predict([("a.jpg", blob)] * 3)
        assert response.status_code == 413
        assert response.json()["detail"] == "more than 2 files in one request: send them in parts"


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--max-files", "0"], {}, "max_files must be at least 1, not 0"),
        (["--max-file-mb", "300"], {}, "max_file_mb (300.0) is larger than max_request_mb (200"),
        ([], {"PERF_GATEWAY_TIMEOUT": "soon"}, "PERF_GATEWAY_TIMEOUT='soon' is not a number"),
        (["--labels", "/nonexistent/labels.txt"], {}, "/nonexistent/labels.txt"),
    ],
    ids=["max-files", "file-over-request", "env-timeout", "labels"],
)
def test_wrong_settings_stop_the_command_with_a_message_naming_them(
    args: list[str], env: dict[str, str], message: str
) -> None:
    out = perf_cli("gateway", "--port", str(host.free_ports(1)[0]), *args, timeout=60, env={**os.environ, **env})
    assert out.returncode == 1, out.stdout + out.stderr
    assert message in " ".join(out.stdout.split()), out.stdout


def test_flags_win_over_environment_variables_which_win_over_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERF_GATEWAY_MAX_FILES", "7")
    monkeypatch.setenv("PERF_GATEWAY_TIMEOUT", "9.5")
    settings = Settings.load(max_files=3, timeout=None, retries=None)
    assert (settings.max_files, settings.timeout, settings.retries) == (3, 9.5, 2)
    assert settings.max_file_bytes == 20 * 2**20 and settings.labels.name == "labels.txt"


def test_every_wrong_setting_is_named_with_its_value_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERF_GATEWAY_MAX_FILES", "many")
    monkeypatch.setenv("PERF_GATEWAY_RETRIES", "-1")
    with pytest.raises(ValueError) as error:
        Settings.load(timeout=0.0)
    assert str(error.value) == (
        "gateway settings: PERF_GATEWAY_MAX_FILES='many' is not an integer; "
        "timeout must be more than 0, not 0.0; retries must be at least 0, not -1"
    )


def test_the_request_triton_receives_holds_each_upload_zero_padded_however_it_arrived() -> None:
    blobs, _ = synthetic_set(3, seed=15)
    blobs.append(b"\x89PNG\r\n\x1a\n")
    # As uploads.py keeps them: views into body chunks, a file split across several.
    images = [[memoryview(blob)[:5], memoryview(blob)[5:9], memoryview(blob)[9:]] for blob in blobs]
    request = service_pb2.ModelInferRequest.FromString(infer_request(MODEL, images, [len(b) for b in blobs]))
    rows = read_and_pad_images(blobs)
    assert request.model_name == MODEL
    assert [(t.name, t.datatype, list(t.shape)) for t in request.inputs] == [("RAW_IMAGE", "UINT8", list(rows.shape))]
    assert [t.name for t in request.outputs] == ["output__0"]
    assert list(request.raw_input_contents) == [rows.tobytes()]


def test_calls_hold_at_most_max_batch_rows_and_a_large_file_goes_alone() -> None:
    sizes = [10] * 130 + [50_000_000] + [20] * 5
    calls = plan_calls(sizes, max_batch=64, max_bytes=64 * 2**20)
    assert sorted(p for call in calls for p in call) == list(range(len(sizes)))
    assert all(len(call) <= 64 for call in calls)
    assert [130] in calls  # 50 MB padded with any other row would pass 64 MiB
    assert all(len(call) * max(sizes[p] for p in call) <= 64 * 2**20 for call in calls if len(call) > 1)
