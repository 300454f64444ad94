"""The converter's ops named by the Keras layers they compute: how ``--float-layers NAME`` finds its nodes.

TensorFlow's converter names each op's output tensor after the Keras layers fused into it, e.g.
``mobilenet_v1_025/conv1_relu/Relu6;mobilenet_v1_025/conv1_bn/FusedBatchNormV3;mobilenet_v1_025/conv1/Conv2D``:
:func:`keras_layers` reads them back ([conv1, conv1_bn, conv1_relu], nested backbones included). The
quantizer's node denylist names ops by those output tensors, so a layer kept float is the list of tensors
:func:`nodes_for_layers` returns. ``edgecnn quant-debug`` ranks layers in the same names.
"""

from __future__ import annotations

import difflib
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecnn.convert.xnnpack import EDGE_OPS
from edgecnn.core.errors import EdgecnnError
from edgecnn.core.keras_env import keras
from edgecnn.runtime.interpreter import TFLiteModel


def _layers(model: Any) -> Iterator[Any]:
    """Every layer in graph order, a nested model's layers at the nested model's place."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):  # a nested backbone
            yield from _layers(layer)


def layer_names(model: Any) -> dict[str, int]:
    """Every layer name in ``model`` (nested models' included) and its position in graph order."""
    return {layer.name: i for i, layer in enumerate(_layers(model))}


def keras_layers(tensor_name: str, known: Mapping[str, int]) -> list[str]:
    """The Keras layers an op's output tensor is named after, in graph order (a fused conv + BN + ReLU:
    [conv, bn, relu]; the converter lists them in no fixed order); [] for a tensor named after no layer
    (the signature's output, e.g. 'StatefulPartitionedCall:0')."""
    found: set[str] = set()
    for part in tensor_name.split(";"):
        scopes = part.split("/")[:-1]  # the last component is the TensorFlow op (Conv2D, Relu6, ...)
        names = [s for s in scopes if s in known]
        if names:
            found.add(names[-1])  # the innermost: a nested backbone's layer, not the backbone
    return sorted(found, key=lambda name: known[name])


@dataclass(frozen=True)
class Node:
    """One op of the calibrated model: its type, output tensor (the quantizer's node name), Keras layers."""

    op: str
    tensor: str
    layers: tuple[str, ...]
    inputs: tuple[str, ...] = ()  # the tensors it reads (weights and biases included)

    @property
    def layer(self) -> str:
        """The layer the op is named by: the first of its fused layers (the conv of conv + BN + ReLU)."""
        return self.layers[0] if self.layers else self.tensor


def model_nodes(blob: bytes, known: Mapping[str, int]) -> list[Node]:
    """The ops of a .tflite (calibrated or quantized) in graph order, edges (QUANTIZE, ...) left out."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.tflite"
        path.write_bytes(blob)
        interpreter = TFLiteModel(path, threads=1, delegate="none").interpreter
        names = {d["index"]: d["name"] for d in interpreter.get_tensor_details()}
        ops = interpreter._get_ops_details()  # the public API lists no ops
    nodes = []
    for op in ops:
        if op["op_name"] in EDGE_OPS or not len(op["outputs"]):
            continue
        tensor = names[int(op["outputs"][0])]
        inputs = tuple(names[int(i)] for i in op["inputs"] if int(i) >= 0)  # -1: an optional input left out
        nodes.append(Node(op["op_name"], tensor, tuple(keras_layers(tensor, known)), inputs))
    return nodes


def nodes_for_layers(nodes: Sequence[Node], wanted: Sequence[str]) -> list[str]:
    """The node names (output tensors) of the ops that compute any of the ``wanted`` Keras layers; an
    unknown name is a user error naming close ones."""
    named = {layer for node in nodes for layer in node.layers}
    unknown = [name for name in wanted if name not in named]
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(named), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else "edgecnn quant-debug MODEL lists them"
        raise EdgecnnError(f"--float-layers {unknown[0]}: no int8 op computes a layer of that name; {hint}")
    return [node.tensor for node in nodes if set(node.layers) & set(wanted)]
