"""Light runtime: numpy, OpenCV and a LiteRT interpreter (or ONNX Runtime); never TensorFlow the framework.

Run a deployed model on a photo, as on a Raspberry Pi with only ``pip install edgecnn``::

    import cv2

    from edgecnn.runtime import classify, detect, open_model, segment

    frame = cv2.imread("photo.jpg")  # BGR uint8, as OpenCV reads it: resized and converted inside
    model = open_model("model_int8.tflite")  # .tflite or .onnx; labels and pixel format from its metadata
    for c in classify(model, frame, top_k=3):
        print(f"{c.label}: {c.score:.2f}")
    for d in detect(open_model("detector_int8.tflite"), frame, threshold=0.5):
        print(d.label, round(d.score, 2), d.box)  # box: (x0, y0, x1, y1) in the frame's pixels
    mask = segment(open_model("segmenter_int8.tflite"), frame)  # class id per pixel, frame-sized

``tests/test_runtime_api.py`` runs this example, as written here, on real models.
"""

# The functions below share their names with the adapter modules (as pycoral's): the package attribute is the
# function, bound after the modules loaded. Import from a module by name (``from edgecnn.runtime.detect import
# read_detections``); ``import edgecnn.runtime.detect as m`` would give the function.
from edgecnn.runtime.api import classify, detect, model_task, segment
from edgecnn.runtime.classify import Class
from edgecnn.runtime.detect import Detection
from edgecnn.runtime.interpreter import Backend, TFLiteModel, find_backend, load_model
from edgecnn.runtime.open import open_model

__all__ = [
    "Backend",
    "Class",
    "Detection",
    "TFLiteModel",
    "classify",
    "detect",
    "find_backend",
    "load_model",
    "model_task",
    "open_model",
    "segment",
]
