"""Any PyTorch image network as a visual extractor: a factory, its keyword arguments, a state dict
and a layer, all in params.yaml.

``factory: "package.module:callable"`` with ``kwargs`` builds the network (a class in your own
package, or e.g. ``timm:create_model`` with ``{model_name: resnet50}`` where timm installs); the
state dict (``torch.load(weights_only=True)``, so no pickled code runs) is loaded strictly. A
forward hook on ``layer`` (a name from ``named_modules()``; null: the network's output) takes the
features of each sampled frame. The frames are fitted to ``input_size`` with swscale's
``interpolation`` and normalised as ``(rgb / 255 - mean) / std``, the torchvision convention.
"""

from __future__ import annotations

import difflib
import inspect
import typing

import numpy as np

from avcache.contract.params import ParamsError, check_call, check_value
from avcache.extraction.extractors import common
from avcache.extraction.extractors.base import VisualExtractor, WeightsNotFound

# swscale's scaling algorithms (av.video.reformatter.Interpolation; the rest are flags)
INTERPOLATIONS = (
    "FAST_BILINEAR",
    "BILINEAR",
    "BICUBIC",
    "X",
    "POINT",
    "AREA",
    "BICUBLIN",
    "GAUSS",
    "SINC",
    "LANCZOS",
    "SPLINE",
)


def resolve(factory: str):
    """The callable named ``module:attribute`` (the attribute may be dotted: ``Class.method``)."""
    if not isinstance(factory, str) or factory.count(":") != 1:
        raise ValueError(f"torch_module: factory must be 'package.module:callable', got {factory!r}")
    module, attr = factory.split(":")
    obj = common.import_module("torch_module", module, "factory")
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"torch_module: factory {factory!r}: module {module!r} has no {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"torch_module: factory {factory!r} is not callable")
    return obj


def check_kwargs(fn, kwargs: dict, where: str) -> dict:
    """``kwargs`` checked against ``fn``'s signature: every name where it takes no ``**kwargs``,
    and the types of the names it annotates."""
    try:
        params = inspect.signature(fn.__init__ if inspect.isclass(fn) else fn).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: the call itself will say
        return kwargs
    if not any(p.kind is p.VAR_KEYWORD for p in params):
        return check_call(fn, kwargs, where)
    try:
        hints = typing.get_type_hints(fn.__init__ if inspect.isclass(fn) else fn)
    except Exception:  # unresolvable annotations: nothing to check types against
        hints = {}
    for k, v in kwargs.items():
        if k in hints:
            check_value(f"{where}.{k}", v, hints[k])
    return kwargs


class TorchModule(VisualExtractor):
    """The network is built, its weights loaded and its layer found before any video is decoded."""

    name = "torch_module"

    def __init__(
        self,
        factory: str | None = None,
        kwargs: dict | None = None,
        state_dict: str | None = None,
        factory_loads_weights: bool = False,
        layer: str | None = None,
        input_size: int | list[int] = 224,
        mean: list[float] = (0.485, 0.456, 0.406),
        std: list[float] = (0.229, 0.224, 0.225),
        interpolation: str = "BILINEAR",
        fit: str = "stretch",
        frames_per_second: int = 16,
        batch_size: int = 32,
        **kw,
    ):
        super().__init__(frames_per_second, **kw)
        from avcache import media

        if fit not in media.FITS:
            raise ValueError(f"torch_module: fit must be one of {sorted(media.FITS)}, got {fit!r}")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"torch_module: interpolation must be one of {list(INTERPOLATIONS)}, got {interpolation!r}"
            )
        size = [input_size, input_size] if isinstance(input_size, int) else list(input_size)
        if len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size):
            raise ValueError(f"torch_module: input_size must be a side or [width, height], got {input_size!r}")
        for key, v in (("mean", mean), ("std", std)):
            if len(v) != 3 or (key == "std" and min(v) <= 0):
                raise ValueError(f"torch_module: {key} must be 3 numbers (R, G, B; std > 0), got {list(v)!r}")
        self.image_size, self.fit, self.interpolation = tuple(size), fit, interpolation
        self.mean, self.std, self.batch_size = [float(v) for v in mean], [float(v) for v in std], batch_size
        self.factory, self.kwargs = factory, dict(kwargs or {})
        fn = resolve(factory)
        check_kwargs(fn, self.kwargs, "extractors.torch_module.kwargs")
        self.weights = common.weights_file(
            self.name, state_dict, "state_dict", factory_loads_weights, "factory_loads_weights"
        )
        try:
            net = fn(**self.kwargs)
        except (ParamsError, WeightsNotFound):
            raise
        except Exception as e:
            raise ValueError(f"torch_module: {factory}(**kwargs) failed ({type(e).__name__}: {str(e)[:200]})") from None
        import torch

        if not isinstance(net, torch.nn.Module):
            raise ValueError(f"torch_module: {factory} returned a {type(net).__name__}, not a torch.nn.Module")
        if self.weights:
            self._load(net)
        self.layer = layer
        modules = dict(net.named_modules())
        if layer is not None and (not layer or layer not in modules):
            close = difflib.get_close_matches(str(layer), list(modules), n=5, cutoff=0.4) or list(modules)[1:6]
            raise ValueError(f"torch_module: {factory} has no layer {layer!r}; e.g. {close} (named_modules())")
        self.net = self.torch_module(net)
        self.hooked = modules[layer] if layer else None

    def _load(self, net):
        import torch

        try:
            state = torch.load(self.weights, map_location="cpu", weights_only=True)
        except Exception as e:  # a pickled model object, or not a torch file
            raise WeightsNotFound(
                f"torch_module: {self.weights} is not a state dict torch.load(weights_only=True) reads "
                f"({type(e).__name__}: {str(e).splitlines()[0][:160]}); save one with "
                "torch.save(model.state_dict(), path)"
            ) from None
        if not isinstance(state, dict):
            raise WeightsNotFound(f"torch_module: {self.weights} holds a {type(state).__name__}, not a state dict")
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as e:  # missing or unexpected keys, or shapes that differ
            lines = [line.strip() for line in str(e).splitlines() if line.strip()]
            raise WeightsNotFound(
                f"torch_module: {self.weights} does not load strictly into {self.factory}"
                f"(**{self.kwargs}): {'; '.join(lines[1:3])[:300]}"
            ) from None

    def decoder(self):
        import functools

        from avcache import media

        return functools.partial(
            media.load_frames,
            per_second=self.frames_per_second,
            size=tuple(self.image_size),
            fit=self.fit,
            interpolation=self.interpolation,
        )

    def decoding(self) -> dict:
        return {**super().decoding(), "interpolation": f"swscale {self.interpolation}"}

    def describe(self):
        import torch

        module = self.factory.split(":")[0]
        return {
            "extractor": self.name,
            "factory": self.factory,
            "kwargs": self.kwargs,
            "module_version": common.module_version(module),
            **common.weights_provenance(self.weights, self.factory),
            "layer": self.layer or "output",
            "input_size": list(self.image_size),
            "frames_per_second": self.frames_per_second,
            "preprocessing": f"(rgb / 255 - {self.mean}) / {self.std}",
            "versions": {"torch": torch.__version__},
        }

    def forward(self, x):
        """The hooked layer's output (or the network's) for a normalised batch [n, 3, h, w]."""
        if self.hooked is None:
            return self.net(x)
        seen = []
        handle = self.hooked.register_forward_hook(lambda _m, _i, out: seen.append(out))
        try:
            self.net(x)
        finally:
            handle.remove()
        return seen[-1]

    def embed(self, images):
        import torch

        device = self.torch_device()
        mean = torch.tensor(self.mean, device=device).view(1, 3, 1, 1) * 255.0
        std = torch.tensor(self.std, device=device).view(1, 3, 1, 1) * 255.0
        out = []
        with self.torch_inference():
            for i in range(0, len(images), self.batch_size):
                x = torch.from_numpy(np.ascontiguousarray(images[i : i + self.batch_size])).to(device)
                y = self.forward((x.permute(0, 3, 1, 2).float() - mean) / std)
                if isinstance(y, (tuple, list)):
                    y = y[0]
                if not isinstance(y, torch.Tensor) or y.ndim not in (2, 4):
                    shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
                    raise ValueError(
                        f"torch_module: layer {self.layer or 'output'} gives {shape}; pick a layer whose "
                        "output is [n, c, h, w] or [n, c]"
                    )
                y = y.float()
                out.append((y.permute(0, 2, 3, 1) if y.ndim == 4 else y[:, None, None, :]).cpu().numpy())
        return np.concatenate(out).astype(np.float32)
