"""annosim: benchmark interactive 3D segmentation models on CT by simulating the annotator."""

__version__ = "0.1.0"
