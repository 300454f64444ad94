"""The option tables of the commands whose pipeline modules import TensorFlow, and the options that
several commands share.

Each options object is a dataclass whose fields carry ``opt(...)`` metadata (:mod:`edgecnn.core.config`): the
CLI builds its flags from these fields, and ``--config`` reads their names as YAML keys. These live here,
not beside their pipelines, because building the parser (``edgecnn --help``, and the light commands
``benchmark``, ``demo``, ``eval`` of a .tflite) must not import TensorFlow; the light pipelines
(evaluate, benchmark, demo, check, explain) declare theirs beside themselves. ``train``'s table is
:class:`edgecnn.core.config.TrainConfig` (a run folder records it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from edgecnn.convert.formats import FORMATS, IO_TYPES
from edgecnn.convert.onnx import DEFAULT_OPSET, OPSETS
from edgecnn.core.config import FRACTION, IMAGE_SIZE, OPEN_FRACTION, POSITIVE, Range, opt
from edgecnn.core.errors import EdgecnnError
from edgecnn.runtime.interpreter import DELEGATES
from edgecnn.runtime.onnx import PROVIDERS
from edgecnn.tasks import TASKS

# ---------------------------------------------------------------------------- shared declarations
TASK = opt(
    "optional: taken from the architecture or the model's metadata; when given it must agree", choices=tuple(TASKS)
)
# More interpreter threads than this only adds contention; far more crashed the interpreter (100000: SIGSEGV).
THREADS = opt("interpreter threads, at most 4 per core; default: all cores", range=Range(1, 4 * (os.cpu_count() or 1)))
DELEGATE = opt("none: plain kernels; xnnpack: LiteRT's CPU delegate; edgetpu: Coral", choices=DELEGATES)
DEVICE = opt("Edge TPU device, e.g. usb:0 or pci:0 (with --delegate edgetpu)")
PROVIDER = opt(
    ".onnx models: the ONNX Runtime execution provider (default cpu); tensorrt caches its engine beside the model",
    choices=tuple(PROVIDERS),
)
FLOAT_LAYERS = opt(
    "int8: keep these Keras layers in float (mixed int8/float); see edgecnn quant-debug", nargs="+", metavar="NAME"
)
CALIB = opt("calibration images: 'digits', a folder, or 'random' (default: run's val data)")
CHANNELS = opt("input channels, for an architecture name", choices=(1, 3))
CLASSES = opt("output classes, for an architecture name", range=Range(1))


def format_flags() -> dict[str, str]:
    """``convert``'s format flags (--int8, --float16, ...): one per .tflite row of the formats table. The .onnx
    rows are reached by ``--onnx`` with a precision flag (``--onnx --int8``), one spelling per row."""
    return {name: fmt.help for name, fmt in FORMATS.items() if fmt.backend == "tflite"}


# ------------------------------------------------------------------------------------------ tables
@dataclass
class ConvertOptions:
    format: str = field(default="int8", metadata=opt("the output format", choice_flags=format_flags))
    io: str | None = field(  # default: the format's first allowed I/O type
        default=None, metadata=opt("int8 input/output type (default uint8)", choices=IO_TYPES)
    )
    calib: str | None = field(default=None, metadata=CALIB)  # None: the run's validation images
    calib_samples: int = field(default=200, metadata=opt("how many calibration images", range=Range(1)))
    data: str | None = field(  # evaluation data; None: the run's own dataset
        default=None, metadata=opt("evaluation data for the report (default: the model's own dataset)")
    )
    evaluate: bool = field(default=True, metadata=opt("skip the accuracy check", flag="--no-eval"))
    task: str | None = field(default=None, metadata=TASK)  # must agree with the model's record
    all_int8: bool = field(  # no float fallback for ops XNNPACK runs only in float
        default=False,
        metadata=opt(
            "--int8: quantize every op, also those XNNPACK runs only in float (for NPUs and microcontrollers)"
        ),
    )
    onnx: bool = field(  # an .onnx for ONNX Runtime (float32, or int8 QDQ) instead of a .tflite
        default=False,
        metadata=opt(
            "write an .onnx for ONNX Runtime (tf2onnx) instead of a .tflite: float32, or int8 QDQ with --int8"
        ),
    )
    opset: int | None = field(  # None: edgecnn.convert.onnx.DEFAULT_OPSET
        default=None, metadata=opt(f"--onnx: the ONNX opset (default {DEFAULT_OPSET})", range=Range(*OPSETS))
    )
    float_layers: tuple[str, ...] = field(default=(), metadata=FLOAT_LAYERS)  # int8 with these layers kept float


@dataclass
class OptimizeConfig:
    prune: float | None = field(
        default=None,
        metadata=opt("magnitude pruning to this sparsity, e.g. 0.8", metavar="SPARSITY", range=OPEN_FRACTION),
    )
    prune_schedule: str = field(
        default="polynomial",
        metadata=opt("how the sparsity grows while fine-tuning", choices=("polynomial", "constant")),
    )
    structured: str | None = field(
        default=None, metadata=opt("N:M structured sparsity (with --prune)", choices=("2:4",))
    )
    prune_block: int = field(
        default=1,
        metadata=opt("prune Dense kernels in blocks of N input weights (compresses better; e.g. 4)", range=Range(1)),
    )
    cluster: int | None = field(
        default=None, metadata=opt("weight clustering to N clusters, e.g. 16", metavar="N", range=Range(2))
    )
    qat: bool = field(default=False, metadata=opt("quantization-aware training (keeps sparsity/clusters)"))
    distill_from: str | None = field(default=None, metadata=opt("teacher .keras or run folder", metavar="TEACHER"))
    temperature: float = field(default=4.0, metadata=opt("distillation temperature", range=POSITIVE))
    alpha: float = field(default=0.1, metadata=opt("weight of the hard-label loss in distillation", range=FRACTION))
    epochs: int = field(  # of the prune, cluster and qat steps
        default=4, metadata=opt("fine-tuning epochs per step", range=Range(1))
    )
    distill_epochs: int | None = field(
        default=None, metadata=opt("distillation epochs (default: the run's epochs)", range=Range(1))
    )
    lr: float = field(  # distillation trains from scratch at 1e-3
        default=1e-4, metadata=opt("fine-tuning learning rate", range=POSITIVE)
    )
    batch: int = field(default=32, metadata=opt("fine-tuning batch size", range=Range(1), cli=False))
    seed: int = field(default=0, metadata=opt("seed of the fine-tuning and the distilled student"))
    bench_runs: int = field(default=100, metadata=opt("benchmark runs per row", range=Range(1), cli=False))
    data: str | None = field(
        default=None,
        metadata=opt(
            "fine-tuning data ('digits' or a folder of class subfolders): needed for a Keras model edgecnn did "
            "not train; default: the run's own dataset"
        ),
    )
    out: str | None = field(default=None, metadata=opt("output folder (default: RUN/optimized)"))

    def steps(self) -> list[str]:
        """The steps asked for, in the order they run (the order of edgecnn.pipelines.optimize.STEPS)."""
        wanted = {
            "distill": self.distill_from is not None,
            "prune": self.prune is not None,
            "cluster": self.cluster is not None,
            "qat": self.qat,
        }
        steps = [name for name, asked in wanted.items() if asked]
        if not steps:
            raise EdgecnnError("nothing to do: give at least one of --prune, --cluster, --qat, --distill-from")
        return steps


@dataclass(frozen=True)
class QuantDebugOptions:
    float_layers: tuple[str, ...] = field(default=(), metadata=FLOAT_LAYERS)  # measure this mixed model too
    top: int = field(
        default=3,
        metadata=opt(
            "how many of the worst layers to suggest in float, each with the layers reading its output",
            range=Range(1),
        ),
    )
    samples: int = field(default=200, metadata=opt("training images the ranking is measured on", range=Range(1)))
    calib: str | None = field(default=None, metadata=CALIB)  # as convert's --calib
    data: str | None = field(
        default=None,
        metadata=opt("dataset to rank and measure on (default: the run's; needed for a model edgecnn did not train)"),
    )
    calib_samples: int = field(default=200, metadata=opt("how many calibration images", range=Range(1), cli=False))
    out: str | None = field(default=None, metadata=opt("report folder (default: beside the model, MODEL_quant_debug/)"))
    seed: int = field(default=0, metadata=opt("seed of the image samples", cli=False))


@dataclass(frozen=True)
class ProfileOptions:
    img: int | None = field(  # default: the architecture's own
        default=None, metadata=opt("input size for an architecture", range=IMAGE_SIZE)
    )
    channels: int = field(default=3, metadata=CHANNELS)
    classes: int = field(default=1000, metadata=CLASSES)
    int8: bool = field(default=False, metadata=opt("activation memory at 1 byte per element (default 4)"))


@dataclass(frozen=True)
class VisualizeOptions:
    filters: str | None = field(  # None: the first convolution, unless --maps is given
        default=None, metadata=opt("draw this convolution's kernels (default: the first conv)", metavar="LAYER")
    )
    maps: str | None = field(
        default=None, metadata=opt("draw this layer's output channels for --image", metavar="LAYER")
    )
    image: str | None = field(default=None, metadata=opt("the input image for --maps", metavar="IMG"))
    out: str = field(default="visualize", metadata=opt("folder for the PNGs and visualize.json", required=True))


@dataclass(frozen=True)
class QuickstartOptions:
    out: str = field(default="runs/quickstart", metadata=opt("folder for everything it writes"))
    epochs: int | None = field(default=None, metadata=opt("training epochs (default: the recipe's)", range=Range(1)))
    arch: str | None = field(default=None, metadata=opt("architecture (default: lenet5)"))
