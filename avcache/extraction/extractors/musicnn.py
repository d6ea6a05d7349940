"""musicnn (Pons & Serra): the package's own TF1 graph and checkpoints, per-second features.

For second t the model sees the 3-s log-mel patch centred on that second (clipped at the clip's
edges), so every second is in the middle of its window. Frame-level layers keep the patch's
frames that fall in second t; pooled layers give one vector per second. Two bugs of the package's
own ``extractor`` are avoided by not using it: the mel spectrogram stays float32 (its float16 cast
overflows to inf) and all patches go through one ``session.run`` (its batch loop repeats batch 1).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from avcache import runtime
from avcache.contract.dataset import SEGMENTS
from avcache.contract.io import sha256_files
from avcache.extraction.extractors.base import AudioExtractor, WeightsNotFound, describe_source
from avcache.extraction.reduce import pool_seconds

SR, HOP, N_FFT, N_MELS = 16000, 256, 512, 96
PATCH = 187  # frames in 3 s, as musicnn computes it: time_to_frames(3) + 1
MODELS = {"MTT_musicnn": 50, "MSD_musicnn": 50, "MTT_vgg": 50, "MSD_vgg": 50}
FRAME_LAYERS = ("timbral", "temporal", "cnn1", "cnn2", "cnn3")
POOLED_LAYERS = ("mean_pool", "max_pool", "penultimate", "taggram")
VGG_LAYERS = ("pool1", "pool2", "pool3", "pool4", "pool5")


def log_mel(samples: np.ndarray) -> np.ndarray:
    """musicnn's input: log10(10000 * mel + 1), [frames, 96], computed in float32."""
    import librosa

    mel = librosa.feature.melspectrogram(
        y=samples.astype(np.float32), sr=SR, hop_length=HOP, n_fft=N_FFT, n_mels=N_MELS
    ).T
    return np.log10(10000.0 * mel.astype(np.float32) + 1.0)


def patch_starts(n_frames: int, seconds: int = SEGMENTS) -> np.ndarray:
    centres = np.round((np.arange(seconds) + 0.5) * SR / HOP).astype(int)
    return np.clip(centres - PATCH // 2, 0, max(n_frames - PATCH, 0))


class Musicnn(AudioExtractor):
    name = "musicnn"
    sample_rate = SR
    resampler = "soxr_hq"  # musicnn's extractor loads with librosa.load(sr=16000)
    fp32_only = "musicnn's TF1 graph is built in float32 by the package"

    def __init__(
        self,
        model: str = "MTT_musicnn",
        layers=("cnn1", "cnn2", "cnn3"),
        combine: str = "concat",
        weights: str | None = None,
        **kw,
    ):
        super().__init__(**kw)
        if model not in MODELS:
            raise ValueError(f"musicnn model {model!r} unknown; choose one of {sorted(MODELS)}")
        self.model, self.layers, self.combine = model, list(layers), combine
        allowed = VGG_LAYERS if "vgg" in model else FRAME_LAYERS + POOLED_LAYERS
        bad = [layer for layer in self.layers if layer not in allowed]
        if bad or not self.layers:
            raise ValueError(f"musicnn {model}: layers {bad or '[]'} not available; choose from {list(allowed)}")
        if combine not in ("concat", "sum", "avg"):
            raise ValueError(f"musicnn combine must be concat, sum or avg, got {combine!r}")
        self.prefix = self._find_weights(weights)
        self._build()

    def _find_weights(self, weights):
        if weights is None:
            weights = os.environ.get("MUSICNN_WEIGHTS")
        if weights is None:
            try:
                import musicnn
            except ImportError:
                raise WeightsNotFound(
                    "musicnn: the `musicnn` package is not installed, and it carries the weights. "
                    "Install it with `pip install --no-deps musicnn==0.1.0` (in requirements.lock), "
                    "or set extractors.musicnn.weights (or MUSICNN_WEIGHTS) to a folder holding "
                    f"the {self.model} checkpoint (.index and .data-00000-of-00001 files)."
                ) from None
            weights = Path(musicnn.__file__).parent / self.model
            self.source = describe_source(weights, "musicnn") + f" musicnn/{self.model}/"
        else:
            self.source = describe_source(weights)
        folder = Path(weights)
        index = folder / ".index"
        if not index.is_file():
            raise WeightsNotFound(
                f"musicnn: no {self.model} checkpoint at {folder} (looked for {index}). Point "
                "extractors.musicnn.weights or MUSICNN_WEIGHTS at the folder that musicnn ships "
                f"as musicnn/{self.model}/ in its wheel."
            )
        return str(folder) + "/"

    def _build(self):
        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # musicnn uses tf.compat.v1.layers
        runtime.quiet_tensorflow()
        import warnings

        import tensorflow as tf
        from musicnn import models

        warnings.filterwarnings("ignore", message=r"`tf\.layers\.\w+` is deprecated", category=UserWarning)
        tf.get_logger().setLevel("ERROR")
        runtime.tf_deterministic()
        self.graph = tf.Graph()
        device = self.tf_device()
        with self.graph.as_default(), tf.device(device):
            tf.compat.v1.set_random_seed(0)
            self.x = tf.compat.v1.placeholder(tf.float32, [None, PATCH, N_MELS])
            self.training = tf.compat.v1.placeholder(tf.bool)
            outs = models.define_model(self.x, self.training, self.model, MODELS[self.model])
            names = (
                ("logits",) + VGG_LAYERS
                if "vgg" in self.model
                else ("logits", "timbral", "temporal", "cnn1", "cnn2", "cnn3", "mean_pool", "max_pool", "penultimate")
            )
            self.outputs = dict(zip(names, outs))
            self.outputs["taggram"] = tf.nn.sigmoid(self.outputs["logits"])
            variables = tf.compat.v1.global_variables()
            config = tf.compat.v1.ConfigProto(
                intra_op_parallelism_threads=2, inter_op_parallelism_threads=1, allow_soft_placement=True
            )  # ops without a GPU kernel stay on the CPU
            config.gpu_options.allow_growth = True
            self.sess = tf.compat.v1.Session(graph=self.graph, config=config)
            try:
                tf.compat.v1.train.Saver(variables).restore(self.sess, self.prefix)
            except Exception as e:
                raise WeightsNotFound(
                    f"musicnn: restoring {self.model} from {self.prefix} failed: {type(e).__name__}: {e}"
                ) from None
            self._check_restored(tf, variables)

    def _check_restored(self, tf, variables):
        """The package's extractor hides restore failures; prove every variable holds the checkpoint's values."""
        reader = tf.compat.v1.train.NewCheckpointReader(self.prefix)
        values = self.sess.run(variables)
        for v, val in zip(variables, values):
            name = v.name.split(":")[0]
            if not reader.has_tensor(name) or not np.array_equal(reader.get_tensor(name), val):
                raise WeightsNotFound(f"musicnn: variable {name} was not restored from {self.prefix}")
        self.n_restored = len(variables)

    def describe(self):
        import librosa
        import tensorflow as tf

        return {
            "extractor": self.name,
            "weights": self.model,
            "weights_source": self.source,
            "weights_sha256": sha256_files(self.prefix + ".index", self.prefix + ".data-00000-of-00001"),
            "layer": "+".join(self.layers),
            "combine": self.combine,
            "input": f"log-mel {N_MELS} bands, {SR} Hz, hop {HOP}, 3-s patch per second",
            "versions": {"tensorflow": tf.__version__, "librosa": librosa.__version__},
        }

    def embed(self, samples):
        mel = log_mel(samples)
        if len(mel) < PATCH:
            mel = np.pad(mel, ((0, PATCH - len(mel)), (0, 0)))
        seconds = int(round(len(samples) / SR))
        starts = patch_starts(len(mel), seconds)
        batch = np.stack([mel[s : s + PATCH] for s in starts])
        res = self.sess.run(
            {layer: self.outputs[layer] for layer in self.layers}, {self.x: batch, self.training: False}
        )
        parts = [self._per_layer(layer, res[layer], starts, seconds) for layer in self.layers]
        if len({len(t) for _, t in parts}) > 1:  # frame-level and pooled layers: align per second
            parts = [(pool_seconds(v, t, seconds), np.arange(seconds) + 0.5) for v, t in parts]
        times = parts[0][1]
        parts = [v for v, _ in parts]
        if self.combine == "concat":
            return np.concatenate(parts, -1).astype(np.float32), times
        if len({p.shape for p in parts}) > 1:
            raise ValueError(
                f"musicnn combine={self.combine} needs equal layer sizes, got {[p.shape[-1] for p in parts]}"
            )
        out = np.sum(parts, 0) if self.combine == "sum" else np.mean(parts, 0)
        return out.astype(np.float32), times

    def _per_layer(self, layer, out, starts, seconds):
        """Map one layer's patch outputs to (values [n, d], times [n])."""
        if layer in POOLED_LAYERS:
            return out.reshape(len(starts), -1), np.arange(seconds) + 0.5
        if layer in VGG_LAYERS:
            out = out.mean(2)  # [patches, time', 128]: average the frequency axis
        else:
            out = out.reshape(out.shape[0], out.shape[1], -1)  # [patches, 187, d]
        steps = out.shape[1]
        centre = (np.arange(steps) + 0.5) * PATCH / steps  # patch-frame position of each step
        vals, times = [], []
        for t, s in enumerate(starts):
            tt = (s + centre) * HOP / SR
            keep = np.flatnonzero((tt >= t) & (tt < t + 1))
            if not len(keep):  # coarse layers (pool5): the step nearest the second's centre
                keep = [int(np.abs(tt - (t + 0.5)).argmin())]
            vals.append(out[t, keep])
            times.append(np.full(len(keep), t + 0.5))
        return np.concatenate(vals), np.concatenate(times)
