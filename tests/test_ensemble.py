"""The reference ensemble on a real server: accuracy, and rows that are not images."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import psutil
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc.model_config_pb2 import TYPE_FP32, TYPE_UINT8
from tritonclient.utils import InferenceServerException

from perf.client import INPUT, OUTPUT, classify, infer_logits
from perf.images import CLASSES, encode, read_and_pad_images, synthetic_image, synthetic_set
from perf.observe import cpu_seconds
from perf.server import EmbeddedServer, ServerError

from .conftest import running_triton

MODEL = "ensemble_model"


def infer_rows(server: EmbeddedServer, rows: np.ndarray) -> np.ndarray:
    with server.client() as client:
        tensor = grpcclient.InferInput(INPUT, list(rows.shape), "UINT8")
        tensor.set_data_from_numpy(rows)
        return client.infer(MODEL, [tensor], client_timeout=60).as_numpy(OUTPUT)


def test_fresh_images_are_classified_with_at_least_95_percent_accuracy(
    server: EmbeddedServer, labels: list[str]
) -> None:
    # Seeds the builder never trained on; 640x480 like a camera's frames.
    jpegs, truth = synthetic_set(250, seed=90210)
    predictions = classify(server.grpc_url, MODEL, jpegs, labels)
    accuracy = np.mean([p.index == t for p, t in zip(predictions, truth, strict=True)])
    assert accuracy >= 0.95, f"accuracy {accuracy:.1%}"
    assert labels == list(CLASSES)
    assert all(abs(sum(p.probabilities) - 1) < 1e-3 for p in predictions)


def test_png_and_odd_sizes_are_classified(server: EmbeddedServer, labels: list[str]) -> None:
    rng = np.random.default_rng(5)
    images = [encode(synthetic_image(label, rng, 300, 300), ".png") for label in range(len(CLASSES))]
    images += [encode(synthetic_image(label, rng, 1080, 1920)) for label in range(len(CLASSES))]
    predictions = classify(server.grpc_url, MODEL, images, labels)
    assert [p.label for p in predictions] == list(CLASSES) * 2


def test_more_images_than_max_batch_size_are_split_into_calls(server: EmbeddedServer) -> None:
    jpegs, _ = synthetic_set(70, seed=3)  # max_batch_size is 64
    with server.client() as client:
        logits = infer_logits(client, MODEL, jpegs, max_batch=64)
    assert logits.shape == (70, 5)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (b"this is not an image at all", "row 1: not a decodable JPEG or PNG (27 bytes"),
        (b"", "row 1: empty image"),
    ],
    ids=["undecodable", "zero-length"],
)
@pytest.mark.parametrize("profile", ["server", "tuned"])
def test_a_bad_row_fails_its_request_with_the_reason(
    request: pytest.FixtureRequest, profile: str, row: bytes, message: str
) -> None:
    """The baseline decodes a request's rows one after the other, the tuned profile on threads
    (``decode_threads``): either way the request fails naming its first bad row."""
    jpegs, _ = synthetic_set(2, seed=4)
    with pytest.raises(InferenceServerException, match=message.replace("(", r"\(")):
        infer_rows(request.getfixturevalue(profile), read_and_pad_images([jpegs[0], row, jpegs[1], row]))


def test_a_zero_width_request_fails_with_the_reason(server: EmbeddedServer) -> None:
    with pytest.raises(InferenceServerException, match="empty image"):
        infer_rows(server, np.zeros((1, 0), np.uint8))


@pytest.mark.parametrize(("preprocessing", "threads"), [("per_image", "1"), ("batched", "1"), ("batched", "3")])
def test_bad_requests_in_a_dynamic_batch_do_not_fail_the_good_ones(
    server: EmbeddedServer, labels: list[str], preprocessing: str, threads: str
) -> None:
    """Many concurrent one-image requests, every third not an image: the dynamic batcher
    groups them, and each resolves on its own merits, in either implementation, its images
    decoded on one thread or on several."""
    jpegs, truth = synthetic_set(30, seed=6)
    rows = [b"\xff\xd8 broken jpeg" if i % 3 == 0 else jpegs[i] for i in range(30)]

    def one(row: bytes) -> str:
        try:
            return labels[int(infer_rows(server, read_and_pad_images([row]))[0].argmax())]
        except InferenceServerException as error:
            return f"error: {error.message()}"

    original = server.model_config("preprocessor")
    patient = server.model_config("preprocessor")
    # A long queue delay makes the batcher wait for company, so batches surely form.
    patient.dynamic_batching.max_queue_delay_microseconds = 200_000
    patient.parameters["preprocessing"].string_value = preprocessing
    patient.parameters["decode_threads"].string_value = threads
    server.load_model("preprocessor", patient)
    log_start = server.log_path.stat().st_size
    with server.client() as client:
        client.update_log_settings({"log_verbose_level": 1})  # logs each execution's request count
    try:
        with ThreadPoolExecutor(12) as pool:
            results = list(pool.map(one, rows))
    finally:
        with server.client() as client:
            client.update_log_settings({"log_verbose_level": 0})
        server.load_model("preprocessor", original)
    for i, result in enumerate(results):
        if i % 3 == 0:
            assert result.startswith("error:") and "not a decodable JPEG or PNG" in result
        else:
            assert not result.startswith("error:"), result
    good = [i for i in range(30) if i % 3]
    assert np.mean([results[i] == CLASSES[truth[i]] for i in good]) >= 0.9
    with server.log_path.open() as log:
        log.seek(log_start)
        executions = [
            int(n) for n in re.findall(r"instance preprocessor_\d+_\d+, executing (\d+) requests", log.read())
        ]
    assert sum(executions) == 30
    assert max(executions) > 1, "images of different lengths share a batch (ragged batching)"


def test_the_cpu_of_each_process_is_told_apart(server: EmbeddedServer) -> None:
    """What bench/limit.py reports per process: Triton itself and each model's python stub."""
    assert server.pid is not None
    # Tests before this one reload the shared server: the stubs a reload replaced exit over a
    # few seconds, and a process that exits between two readings is missing from the second.
    server.settle(sum(g.count for m in ("preprocessor", "classifier") for g in server.model_config(m).instance_group))
    before = cpu_seconds(server.pid)
    assert set(before) == {"tritonserver", "preprocessor", "classifier"}
    rng = np.random.default_rng(3)
    large = [encode(synthetic_image(i % len(CLASSES), rng, 1280, 720)) for i in range(96)]
    with server.client() as client:
        infer_logits(client, MODEL, large, max_batch=8)
    after = cpu_seconds(server.pid)
    assert after["preprocessor"] > before["preprocessor"] and after["classifier"] > before["classifier"]


@pytest.mark.parametrize(
    ("model", "settings", "message"),
    [
        ("preprocessor", {"decode_threads": "0"}, "decode_threads '0': give a whole number, 1 or more"),
        ("preprocessor", {"decode_threads": "two"}, "decode_threads 'two': give a whole number, 1 or more"),
        ("preprocessor", {"decode_threads": "2", "preprocessing": "per_image"},
         "decode_threads 2 needs preprocessing: batched"),
        ("preprocessor", {"preprocessing": "fast"}, "preprocessing 'fast': choose batched or per_image"),
        ("classifier", {"nice": "20"}, "nice '20': give a whole number from 0 to 19"),
        ("classifier", {"nice": "-5"}, "nice '-5': give a whole number from 0 to 19"),
    ],
)  # fmt: skip
def test_model_settings_they_cannot_honour_are_refused_at_load(
    server: EmbeddedServer, model: str, settings: dict[str, str], message: str
) -> None:
    original = server.model_config(model)
    wrong = server.model_config(model)
    for key, value in settings.items():
        wrong.parameters[key].string_value = value
    try:
        with pytest.raises(ServerError, match=re.escape(message)):
            server.load_model(model, wrong)
    finally:
        server.load_model(model, original)
    jpegs, truth = synthetic_set(2, seed=9)
    assert [CLASSES[int(i)] for i in infer_rows(server, read_and_pad_images(jpegs)).argmax(axis=1)] == [
        CLASSES[t] for t in truth
    ]


def test_the_classifier_steps_back_by_its_nice_and_still_answers(server: EmbeddedServer) -> None:
    """``nice``: every thread of the classifier's stub runs that much below Triton's priority."""
    original = server.model_config("classifier")
    polite = server.model_config("classifier")
    polite.parameters["nice"].string_value = "7"
    server.load_model("classifier", polite)
    try:
        instances = sum(g.count for m in ("preprocessor", "classifier") for g in server.model_config(m).instance_group)
        server.settle(instances)  # the stubs of the replaced instances gone
        jpegs, truth = synthetic_set(2, seed=10)
        answers = infer_rows(server, read_and_pad_images(jpegs)).argmax(axis=1)
        triton = psutil.Process(server.pid)
        stubs = [p for p in triton.children() if any("classifier/1/model.py" in a for a in p.cmdline())]
        assert stubs and all(p.nice() == triton.nice() + 7 for stub in stubs for p in _threads(stub))
    finally:
        server.load_model("classifier", original)
    assert [CLASSES[int(i)] for i in answers] == [CLASSES[t] for t in truth]


def _threads(process: psutil.Process) -> list[psutil.Process]:
    """Each thread of ``process`` as a process, for its own nice value."""
    return [psutil.Process(t.id) for t in process.threads()]


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    yield from running_triton(tmp_path_factory, "tuned", profile="tuned")


def test_the_tuned_profile_answers_as_the_baseline_does(server: EmbeddedServer, tuned: EmbeddedServer) -> None:
    """configs/tuned.pbtxt changes how the work is done (batched preprocessing, uint8 pixels
    handed to a classifier that normalizes them in its graph, instances, batching), never the
    answer: the same logits, to float tolerance, on JPEGs and PNGs, colour and grey, small and
    large, square and portrait, one at a time and batched."""
    assert server.model_config("preprocessor").parameters["preprocessing"].string_value == "per_image"
    assert tuned.model_config("preprocessor").parameters["preprocessing"].string_value == "batched"
    handed = [s.model_config(m) for s in (server, tuned) for m in ("preprocessor", "classifier")]
    assert [handed[0].output[0].data_type, handed[1].input[0].data_type] == [TYPE_FP32, TYPE_FP32]
    assert [handed[2].output[0].data_type, handed[3].input[0].data_type] == [TYPE_UINT8, TYPE_UINT8]
    jpegs, _ = synthetic_set(24, seed=31)
    rng = np.random.default_rng(8)
    varied = [encode(synthetic_image(label, rng, 64, 48), ".png") for label in range(len(CLASSES))]
    varied += [encode(synthetic_image(label, rng, 1280, 720), ".jpg", quality=60) for label in range(len(CLASSES))]
    grey = cv2.cvtColor(synthetic_image(1, rng, 300, 300), cv2.COLOR_BGR2GRAY)  # one channel in the file
    varied += [encode(grey), encode(grey, ".png")]
    with server.client() as baseline, tuned.client() as fast:
        for images, batch in ((jpegs, 8), (varied, 1), (varied, 16)):
            expected = infer_logits(baseline, MODEL, images, max_batch=batch)
            got = infer_logits(fast, MODEL, images, max_batch=batch)
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
