"""Build the reference classifier: train a small CNN on synthetic images, export TorchScript.

Training images go through the repository's own preprocess.py (encode to JPEG, decode,
resize, normalize), so the model learns exactly what the served pipeline feeds it.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from torch import nn

from perf.images import CLASSES, encode, synthetic_image
from perf.repository import PIXELS_MODEL_FILE, TORCHSCRIPT_FILE

ARCHITECTURES = ("small", "resnet18")
LEARNING_RATE = 4e-3


def load_preprocess(repo: Path) -> ModuleType:
    """The repository's preprocess.py as a module (it is a file of the model, not of perf)."""
    path = repo / "preprocessor" / "1" / "preprocess.py"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {repo} the reference model repository?")
    spec = importlib.util.spec_from_file_location("perf_model_preprocess", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _conv(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class SmallCNN(nn.Module):
    """About 40 k parameters; a stride-4 stem of two convolutions keeps 224x224 training within a minute."""

    def __init__(self, classes: int = len(CLASSES)) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv(3, 8, 3, 2), _conv(8, 16, 3, 2), nn.MaxPool2d(2),
            _conv(16, 32), nn.MaxPool2d(2),
            _conv(32, 64), nn.MaxPool2d(2),
            _conv(64, 64),
        )  # fmt: skip
        self.head = nn.Linear(128, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        return self.head(torch.cat([f.mean((2, 3)), f.amax((2, 3))], 1))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv(cin, cout, 3, stride),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.skip = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


class ResNet18(nn.Module):
    """ResNet-18's layout (11.7 M parameters, 1.8 GFLOPs at 224x224) for realistic compute."""

    def __init__(self, classes: int = len(CLASSES)) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv(3, 64, 7, 2), nn.MaxPool2d(3, 2, 1)]
        cin = 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(512, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean((2, 3)))


def training_set(count: int, seed: int, preprocess: ModuleType) -> tuple[torch.Tensor, torch.Tensor]:
    """Images of every class at varied sizes, aspect ratios and JPEG qualities, preprocessed
    by the served code path."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % len(CLASSES)
    x = np.empty((count, 3, 224, 224), np.float32)
    for i, label in enumerate(labels):
        height = int(rng.integers(120, 300))
        width = int(height * rng.uniform(0.7, 1.6))
        jpeg = encode(synthetic_image(int(label), rng, height, width), quality=int(rng.integers(60, 96)))
        x[i] = preprocess.preprocess(np.frombuffer(jpeg, np.uint8))
    return torch.from_numpy(x), torch.from_numpy(labels)


@dataclass
class BuildResult:
    path: Path
    arch: str
    seconds: float
    train_accuracy: float | None


def build(
    repo: Path,
    arch: str = "small",
    images: int = 1500,
    epochs: int = 8,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> BuildResult:
    """Write ``repo/classifier/1/model.pt`` and ``repo/classifier/labels.txt``.

    ``small`` is trained (one thread, so the time is that of one core); ``resnet18`` keeps
    its seeded random weights: it exists for realistic compute, not for its answers.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    start = time.perf_counter()
    torch.manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model: nn.Module = SmallCNN() if arch == "small" else ResNet18()
        accuracy = None
        if arch == "small":
            x, y = training_set(images, seed, load_preprocess(repo))
            log(f"generated {images} training images in {time.perf_counter() - start:.1f} s")
            accuracy = _train(model, x, y, epochs, log)
        model.to(memory_format=torch.contiguous_format).eval()
        scripted = torch.jit.script(model)
    finally:
        torch.set_num_threads(threads)
    out = repo / "classifier" / "1" / TORCHSCRIPT_FILE
    _save(scripted, out)
    write_pixels_model(repo)
    (repo / "classifier" / "labels.txt").write_text("\n".join(CLASSES) + "\n")
    return BuildResult(out, arch, time.perf_counter() - start, accuracy)


class FromPixels(nn.Module):
    """The classifier taking the preprocessor's resized pixels as they are: uint8 RGB, [n, 224,
    224, 3]. Scaling and normalizing happen inside the graph, with the preprocessor's own
    constants, so the tensor handed between the models is a quarter of the float one; and the
    pixels' layout, viewed as [n, 3, 224, 224], is channels-last, the layout in which oneDNN's
    convolutions run about twice as fast on CPU (measured 0.57 against 1.2 ms an image)."""

    def __init__(self, net: torch.jit.ScriptModule, scale: np.ndarray, shift: np.ndarray) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("scale", torch.from_numpy(np.ascontiguousarray(scale, dtype=np.float32)))
        self.register_buffer("shift", torch.from_numpy(np.ascontiguousarray(shift, dtype=np.float32)))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        normalized = torch.addcmul(self.shift, pixels.to(torch.float32), self.scale)
        return self.net(normalized.permute(0, 3, 1, 2))


def write_pixels_model(repo: Path) -> Path:
    """``model_pixels.pt`` beside ``model.pt``: the same network behind :class:`FromPixels`,
    the tuned profile's classifier (its input UINT8 [224, 224, 3])."""
    folder = repo / "classifier" / "1"
    net = torch.jit.load(str(folder / TORCHSCRIPT_FILE)).eval()
    preprocess = load_preprocess(repo)
    scripted = torch.jit.script(FromPixels(net, preprocess.SCALE, preprocess.SHIFT).eval())
    out = folder / PIXELS_MODEL_FILE
    _save(scripted, out)
    return out


def _save(scripted: torch.jit.ScriptModule, out: Path) -> None:
    tmp = out.with_suffix(".pt.tmp")
    scripted.save(str(tmp))
    tmp.replace(out)


def _train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, log: Callable[[str], None]) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=1e-4)
    steps = epochs * ((len(x) + 31) // 32)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=LEARNING_RATE, total_steps=steps)
    loss_fn = nn.CrossEntropyLoss()
    # oneDNN's convolutions run about twice as fast on CPU in channels-last layout.
    model.to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
    generator = torch.Generator().manual_seed(0)
    accuracy = 0.0
    for epoch in range(epochs):
        model.train()
        correct = 0
        for batch in torch.randperm(len(x), generator=generator).split(32):
            # Horizontal flips are free augmentation: no class depends on handedness.
            xb = torch.where(torch.rand(len(batch), 1, 1, 1) < 0.5, x[batch].flip(3), x[batch])
            logits = model(xb)
            loss = loss_fn(logits, y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            correct += int((logits.argmax(1) == y[batch]).sum())
        accuracy = correct / len(x)
        log(f"epoch {epoch + 1}/{epochs}: loss {loss.item():.3f}, train accuracy {accuracy:.1%}")
    return accuracy
