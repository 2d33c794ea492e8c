"""Model manifests: one TOML file per model saying what it is, where it comes from and how to feed it.

Code reads every model-specific number from here so that a site can replace the
evaluation-grade embedder with a licensed one by adding a manifest (and pinning
its artifact in ``supply/catalogue.toml``), without touching the pipeline. The
file is validated once at load, and each problem is reported with its key path
so an installer can fix the file without reading code.
"""

from __future__ import annotations

import itertools
import logging
import tomllib
from datetime import date
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import Field, ValidationError, model_validator

from core.settings import StrictModel
from models.errors import ModelManifestError

logger = logging.getLogger(__name__)

MANIFEST_DIR = Path(__file__).with_name("manifests")


class ArtifactRef(StrictModel):
    """Which pinned registry artifact holds the model file, and the file's own sha256."""

    key: str = Field(min_length=1)
    member: str = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Licence(StrictModel):
    """Whether the model may be deployed; ``evaluation`` models must be replaced before live use."""

    grade: Literal["evaluation", "deployable"]
    note: str = Field(min_length=1)


class InputSpec(StrictModel):
    """The tensor the model expects. Each value is fed as ``(pixel - mean) / scale``."""

    width: int = Field(gt=0, le=4096)
    height: int = Field(gt=0, le=4096)
    colour_order: Literal["RGB", "BGR"]
    layout: Literal["NHWC", "NCHW"] = Field(description="NCHW for models exported from PyTorch/ONNX")
    mean: float | tuple[float, float, float] = Field(
        description="one value for all channels, or one per channel in colour_order"
    )
    scale: float = Field(gt=0)


class OutputSpec(StrictModel):
    """Output sizes, checked against the converted model so a wrong manifest fails at setup."""

    dim: int = Field(gt=0, description="embedding length, or values per anchor for a detector")
    anchors: int | None = Field(default=None, gt=0, description="detector only: number of anchors")


class DecodeSpec(StrictModel):
    """How BlazeFace-style detector outputs turn into faces."""

    family: Literal["blazeface"] = "blazeface"
    anchor_grid: int = Field(gt=0, description="anchors form a grid x grid lattice, x varying fastest")
    keypoints: int = Field(gt=0)
    score_threshold: float = Field(gt=0, lt=1)
    nms_iou: float = Field(gt=0, lt=1)
    logit_clip: float = Field(gt=0)
    retry_padding: float = Field(ge=0, le=2, description="fraction of each side added for the retry")


class YuNetDecodeSpec(StrictModel):
    """How YuNet outputs (per stride: class, objectness, box and five keypoints) turn into faces.

    As OpenCV's ``FaceDetectorYN``: score = sqrt(cls * obj), box centre and keypoints
    are offsets from each grid cell in strides, sizes are exp(offset) * stride, then
    NMS over the integer boxes. The photo is run at its own size (at most
    ``max_side``, padded right and bottom to a multiple of the largest stride).
    Faces are looked for with ``score_threshold``, then on a canvas padded by
    ``retry_padding`` per side, then with ``fallback_score_threshold`` on both:
    OpenCV's default 0.9 misses about 7% of tight 112 px crops, which score 0.80-0.90.
    Once one face passes ``score_threshold``, the photo's other faces scoring at
    least ``companion_score_threshold`` are kept too: in a group photo a clear face
    can score 0.86-0.90 beside a 0.92 one, while background clutter scores 0.65.
    """

    family: Literal["yunet"]
    strides: tuple[int, ...] = (8, 16, 32)
    keypoints: Literal[5] = 5
    score_threshold: float = Field(gt=0, lt=1)
    fallback_score_threshold: float = Field(gt=0, lt=1)
    companion_score_threshold: float = Field(
        default=0.8, gt=0, lt=1,
        description="once a face passes score_threshold, other faces of the same photo scoring this are kept too")
    nms_iou: float = Field(gt=0, lt=1)
    top_k: int = Field(gt=0)
    max_side: int = Field(gt=0, le=4096, description="photos are scaled down so their longer side is at most this")
    retry_padding: float = Field(ge=0, le=2, description="fraction of each side added for the retry")
    quality_score_warn: float = Field(gt=0, lt=1, description="the quality check warns below this score")

    @model_validator(mode="after")
    def _ladder_descends(self) -> YuNetDecodeSpec:
        if self.fallback_score_threshold > self.score_threshold:
            raise ValueError("fallback_score_threshold must not be above score_threshold")
        if not self.fallback_score_threshold <= self.companion_score_threshold <= self.score_threshold:
            raise ValueError("companion_score_threshold must lie between fallback_score_threshold and "
                             "score_threshold")
        return self


class DequantiseSpec(StrictModel):
    """The artifact is a block-quantised ONNX file; ``models/dequantise.py`` writes its fp32 form first.

    ``sha256`` pins that fp32 file: the step is deterministic, so any other result
    means a changed tool or input and is refused.
    """

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class TfjsSource(StrictModel):
    """A TF.js weights manifest whose single shard is the artifact member; rebuilt by a known architecture.

    OpenVINO cannot read TF.js, so the network is rebuilt from code
    (``models/facerec_resnet.py``); the JSON that lays out the weights is pinned too.
    """

    weights_manifest: str = Field(min_length=1, description="member path of the *-weights_manifest.json")
    weights_manifest_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    architecture: Literal["dlib-resnet-v1"]


class Int8Spec(StrictModel):
    """How to make this embedder's INT8 form when a fused template asks for it (``models/quantise.py``).

    NNCF post-training quantisation of the fp32 IR. Its calibration faces are the ones pinned registry
    packages carry (``models/registry_faces.py``), never the development set, so the accuracy measured
    on the development set is not measured on the faces it was calibrated with; each face is used as is
    and mirrored. The calibration's results are pinned (``pins``) and the output's hash with them
    (``sha256``), because that inference rounds differently on other CPUs. The recipe (this table,
    the nncf version and the calibration images' hashes) names the IR, so a changed recipe never
    reuses an old file.
    """

    method: Literal["nncf-ptq"]
    preset: Literal["mixed", "performance"] = Field(
        description="mixed: asymmetric activations (measured closer to fp32 here); performance: symmetric")
    detector: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$",
                          description="the detector whose faces this embedder's crops assume, for calibration")
    pins: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*\.json$",
                      description="file in models/manifests/int8/ holding the activation ranges and bias "
                                  "corrections measured once (models/int8_pins.py), so every CPU makes the same file")
    xml_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="the INT8 .xml every machine must make")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$",
                        description="the INT8 .bin every machine must make with those pins; any other is refused")


class ConversionSpec(StrictModel):
    """Edits needed to turn the registry file into an IR that runs one face at a time."""

    fix_output_batch: bool = Field(
        default=False,
        description="replace the exported batch size in the final Reshape constant by -1",
    )
    tfjs: TfjsSource | None = Field(default=None, description="set when the artifact is TF.js weights, not .tflite")
    dequantise: DequantiseSpec | None = Field(default=None, description="set when the artifact is an int8bq ONNX file")
    int8: Int8Spec | None = Field(default=None, description="set when a fused template may run this model in INT8")


class AlignmentSpec(StrictModel):
    """Where the detector's eyes, nose tip and mouth centre must land in an embedder's input crop.

    Each embedder was trained on faces cropped its own way; without this table the
    ArcFace 112x112 template (models/align.py) is used, scaled to the input size.
    """

    points: tuple[tuple[float, float], tuple[float, float], tuple[float, float], tuple[float, float]] = Field(
        description="image-left eye, image-right eye, nose tip, mouth centre, as fractions of the unpadded square"
    )
    padding: float = Field(ge=0, le=1, description="border added on each side, as a fraction of the square")


class ScoreBandSpec(StrictModel):
    """One score band: scores at or above ``threshold`` (and below the band above) fall in it.

    ``far`` and ``tar`` are measured, not targets: the share of impostor and of
    genuine pairs in the calibration set scoring at or above ``threshold``, so
    staff are told how often a different person reaches this band.
    """

    name: str = Field(pattern=r"^[a-z][a-z ]*[a-z]$")
    label: str = Field(min_length=1, description="what staff read beside a candidate in this band")
    threshold: float = Field(ge=-1, le=1, description="cosine similarity; -1 for the catch-all lowest band")
    far: float = Field(ge=0, le=1, description="measured false-accept rate at threshold")
    tar: float | None = Field(default=None, ge=0, le=1, description="measured true-accept rate at threshold")


class Calibration(StrictModel):
    """Decision threshold and score bands for cosine similarity, with where they were measured.

    ``models.calibration`` reads this table; nothing else hard-codes a threshold,
    because each embedder's scores live on their own scale (dlib's impostors
    score higher than MobileFaceNet's genuine pairs). Without ``bands`` only the
    operating threshold is known and scores are shown as above or below it.
    """

    threshold_far_1e_3: float = Field(alias="threshold_far_1e-3", ge=-1, le=1,
                                      description="operating threshold: FAR at most 1e-3 where measured")
    status: Literal["placeholder", "dev-set", "site-calibrated"]
    source: str = Field(min_length=1)
    dataset: str | None = Field(default=None, description="the labelled set the figures come from")
    measured_on: date | None = None
    genuine_pairs: int | None = Field(default=None, ge=0)
    impostor_pairs: int | None = Field(default=None, ge=0)
    bands: tuple[ScoreBandSpec, ...] = ()

    @model_validator(mode="after")
    def _bands_are_ordered(self) -> Calibration:
        if not self.bands:
            return self
        names = [b.name for b in self.bands]
        if len(set(names)) != len(names):
            raise ValueError(f"band names must be unique, not {names}")
        thresholds = [b.threshold for b in self.bands]
        if any(a <= b for a, b in itertools.pairwise(thresholds)):
            raise ValueError(f"bands must be listed from the highest threshold down, not {thresholds}")
        fars = [b.far for b in self.bands]
        if any(a > b for a, b in itertools.pairwise(fars)):
            raise ValueError(f"a lower threshold cannot have a lower false-accept rate, not {fars}")
        if thresholds[-1] != -1:
            raise ValueError("the last band must have threshold -1 so that every score falls in a band")
        if self.threshold_far_1e_3 not in thresholds:
            raise ValueError(f"threshold_far_1e-3 ({self.threshold_far_1e_3}) must be one of the band thresholds")
        return self


class EmbeddingSpec(StrictModel):
    """How the embedder's output becomes a template.

    ``mirror_sum`` adds the embedding of the horizontally mirrored crop before
    normalising: measured on the dev set it lifts TAR at FAR 1e-3 by about one
    point for twice the embedding cost (about 1.3 ms more per face). It changes
    every template, so a manifest using it must have its own id.
    """

    mirror_sum: bool = False


class ModelManifest(StrictModel):
    """One model, fully described."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    version: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    kind: Literal["detector", "embedder"]
    description: str = Field(min_length=1)
    artifact: ArtifactRef
    licence: Licence
    input: InputSpec
    output: OutputSpec
    conversion: ConversionSpec = ConversionSpec()
    alignment: AlignmentSpec | None = None
    embedding: EmbeddingSpec = EmbeddingSpec()
    decode: DecodeSpec | YuNetDecodeSpec | None = None
    calibration: Calibration | None = None
    detector: str | None = Field(
        default=None, pattern=r"^[a-z0-9][a-z0-9_-]*$",
        description="embedder only: the detector manifest whose keypoints its crops (and calibration) assume; "
                    "none means the default detector",
    )

    @model_validator(mode="after")
    def _sections_match_kind(self) -> ModelManifest:
        if self.kind == "detector":
            if self.decode is None:
                raise ValueError("a detector needs a [decode] table")
            if self.detector is not None:
                raise ValueError("detector = ... belongs to embedders only")
            if isinstance(self.decode, YuNetDecodeSpec):
                if self.output.anchors is not None or self.output.dim != 4 + 2 * self.decode.keypoints:
                    raise ValueError("a YuNet detector has output.dim 14 (box and 5 keypoints) and no output.anchors")
            elif self.output.anchors != self.decode.anchor_grid**2:
                raise ValueError(
                    f"output.anchors must be decode.anchor_grid squared "
                    f"({self.decode.anchor_grid**2}), not {self.output.anchors}"
                )
            elif self.output.dim != 4 + 2 * self.decode.keypoints:
                raise ValueError(
                    f"output.dim must be 4 box values plus 2 per keypoint "
                    f"({4 + 2 * self.decode.keypoints}), not {self.output.dim}"
                )
            if self.calibration is not None:
                raise ValueError("[calibration] belongs to embedders only")
            if self.embedding.mirror_sum:
                raise ValueError("[embedding] belongs to embedders only")
        else:
            if self.decode is not None or self.output.anchors is not None:
                raise ValueError("an embedder has no [decode] table and no output.anchors")
            if self.calibration is None:
                raise ValueError("an embedder needs a [calibration] table (a placeholder is fine)")
        return self

    @property
    def ref(self) -> str:
        """``id@version``: stored beside every template so templates from different models never mix."""
        return f"{self.id}@{self.version}"


class FusedComponent(StrictModel):
    """One embedder inside a fused template and the weight its unit-length embedding is scaled by."""

    embedder: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", description="an embedder manifest name")
    weight: float = Field(gt=0, le=100)
    precision: Literal["fp32", "int8"] = Field(
        default="fp32", description="int8: the part's own [conversion.int8] recipe (models/quantise.py)")
    detector: str | None = Field(
        default=None, pattern=r"^[a-z0-9][a-z0-9_-]*$",
        description="the detector whose keypoints this part's crop comes from, when not the fused template's: "
                    "it is run on the same photo and must find the primary detector's face (models/face_match.py)")
    retry_padding: float = Field(
        default=1.0, ge=0, le=3,
        description="with a detector of its own: when it does not find the primary's face, look again in that "
                    "face's box padded by this many box sides per side (0: no retry, refuse at once)")
    mirror_sum: bool = Field(
        default=False,
        description="this part's template is the sum of the face's and its mirror image's embeddings, then "
                    "L2-normalised (as an embedder manifest's [embedding] mirror_sum), the same model run twice")


class FusedManifest(StrictModel):
    """A template made of several embedders' templates: each scaled by its weight, concatenated, re-normalised.

    For unit vectors the cosine of two such templates is
    ``sum(w_i^2 * cos_i) / sum(w_i^2)``: one inner product in one index equals a
    weighted sum of the component scores. Weights are fitted on the development
    set only (``models.fusion``). It is an embedder of its own (its ``ref`` is
    stored with every template and library), with its own calibration. Fused
    manifests live in ``models/manifests/fused/``: they have no model file of
    their own, so nothing is converted for them.
    """

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    version: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    kind: Literal["fused"]
    description: str = Field(min_length=1)
    detector: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    components: tuple[FusedComponent, ...] = Field(min_length=2, max_length=3)
    weights_source: str = Field(min_length=1, description="how and on what the weights were fitted")
    licence: Licence
    calibration: Calibration

    @model_validator(mode="after")
    def _components_differ(self) -> FusedManifest:
        names = [c.embedder for c in self.components]
        if len(set(names)) != len(names):
            raise ValueError(f"each embedder may appear once, not {names}")
        return self

    def part_detector(self, component: FusedComponent) -> str:
        """The detector a part's crop comes from: its own, else the template's (which decides the face)."""
        return component.detector or self.detector

    @property
    def ref(self) -> str:
        return f"{self.id}@{self.version}"


FUSED_DIR = MANIFEST_DIR / "fused"


def manifest_names() -> list[str]:
    """Names of the model manifests shipped in ``models/manifests`` (each has a model file to convert)."""
    return sorted(p.stem for p in MANIFEST_DIR.glob("*.toml"))


def fused_names() -> list[str]:
    """Names of the fused-template manifests shipped in ``models/manifests/fused``."""
    return sorted(p.stem for p in FUSED_DIR.glob("*.toml"))


def is_fused(name_or_path: str | Path) -> bool:
    """Whether a name or path refers to a fused-template manifest."""
    if isinstance(name_or_path, Path) or "/" in name_or_path or name_or_path.endswith(".toml"):
        try:
            return tomllib.loads(Path(name_or_path).read_text(encoding="utf-8")).get("kind") == "fused"
        except (OSError, tomllib.TOMLDecodeError):
            return False
    return (FUSED_DIR / f"{name_or_path}.toml").exists() and not (MANIFEST_DIR / f"{name_or_path}.toml").exists()


def _resolve(name_or_path: str | Path, directory: Path = MANIFEST_DIR) -> Path:
    if isinstance(name_or_path, Path) or "/" in name_or_path or name_or_path.endswith(".toml"):
        return Path(name_or_path)
    path = directory / f"{name_or_path}.toml"
    if not path.exists():
        known = manifest_names() + fused_names()
        raise ModelManifestError(
            f"There is no model manifest called {name_or_path!r}. "
            f"Known manifests: {', '.join(known) or 'none'} (in {MANIFEST_DIR})."
        )
    return path


_Schema = TypeVar("_Schema", bound=StrictModel)


def _read(path: Path, schema: type[_Schema]) -> _Schema:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ModelManifestError(f"Model manifest {path} does not exist.") from e
    except tomllib.TOMLDecodeError as e:
        raise ModelManifestError(f"Model manifest {path} is not valid TOML: {e}") from e
    try:
        return schema.model_validate(data)
    except ValidationError as e:
        lines = [f"Model manifest {path} is invalid:"]
        for err in e.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(top level)"
            lines.append(f"  {key}: {err['msg']}")
        raise ModelManifestError("\n".join(lines)) from e


def load_manifest(name_or_path: str | Path) -> ModelManifest:
    """Load and validate a manifest by name (``"mobilefacenet"``) or by path to a TOML file."""
    path = _resolve(name_or_path)
    manifest = _read(path, ModelManifest)
    logger.debug("loaded manifest %s from %s", manifest.ref, path)
    return manifest


def load_fused_manifest(name_or_path: str | Path) -> FusedManifest:
    """Load and validate a fused-template manifest by name (``"sface_dlib"``) or path."""
    path = _resolve(name_or_path, FUSED_DIR)
    manifest = _read(path, FusedManifest)
    logger.debug("loaded fused manifest %s from %s", manifest.ref, path)
    return manifest
