"""Model manifests: one TOML file per model saying what it is, where it comes from and how to feed it.

Code reads every model-specific number from here so that a site can replace the
evaluation-grade embedder with a licensed one by adding a manifest (and pinning
its artifact in ``supply/catalogue.toml``), without touching the pipeline. The
file is validated once at load, and each problem is reported with its key path
so an installer can fix the file without reading code.
"""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path
from typing import Literal

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
    layout: Literal["NHWC"]
    mean: float
    scale: float = Field(gt=0)


class OutputSpec(StrictModel):
    """Output sizes, checked against the converted model so a wrong manifest fails at setup."""

    dim: int = Field(gt=0, description="embedding length, or values per anchor for a detector")
    anchors: int | None = Field(default=None, gt=0, description="detector only: number of anchors")


class DecodeSpec(StrictModel):
    """How BlazeFace-style detector outputs turn into faces."""

    anchor_grid: int = Field(gt=0, description="anchors form a grid x grid lattice, x varying fastest")
    keypoints: int = Field(gt=0)
    score_threshold: float = Field(gt=0, lt=1)
    nms_iou: float = Field(gt=0, lt=1)
    logit_clip: float = Field(gt=0)
    retry_padding: float = Field(ge=0, le=2, description="fraction of each side added for the retry")


class ConversionSpec(StrictModel):
    """Edits needed to turn the registry file into an IR that runs one face at a time."""

    fix_output_batch: bool = Field(
        default=False,
        description="replace the exported batch size in the final Reshape constant by -1",
    )


class Calibration(StrictModel):
    """Decision threshold for cosine similarity. Placeholder until measured on the site's own data."""

    threshold_far_1e_3: float = Field(alias="threshold_far_1e-3", ge=-1, le=1)
    status: Literal["placeholder", "site-calibrated"]
    source: str = Field(min_length=1)


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
    decode: DecodeSpec | None = None
    calibration: Calibration | None = None

    @model_validator(mode="after")
    def _sections_match_kind(self) -> ModelManifest:
        if self.kind == "detector":
            if self.decode is None:
                raise ValueError("a detector needs a [decode] table")
            if self.output.anchors != self.decode.anchor_grid**2:
                raise ValueError(
                    f"output.anchors must be decode.anchor_grid squared "
                    f"({self.decode.anchor_grid**2}), not {self.output.anchors}"
                )
            if self.output.dim != 4 + 2 * self.decode.keypoints:
                raise ValueError(
                    f"output.dim must be 4 box values plus 2 per keypoint "
                    f"({4 + 2 * self.decode.keypoints}), not {self.output.dim}"
                )
            if self.calibration is not None:
                raise ValueError("[calibration] belongs to embedders only")
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


def manifest_names() -> list[str]:
    """Names of the manifests shipped in ``models/manifests``."""
    return sorted(p.stem for p in MANIFEST_DIR.glob("*.toml"))


def _resolve(name_or_path: str | Path) -> Path:
    if isinstance(name_or_path, Path) or "/" in name_or_path or name_or_path.endswith(".toml"):
        return Path(name_or_path)
    path = MANIFEST_DIR / f"{name_or_path}.toml"
    if not path.exists():
        raise ModelManifestError(
            f"There is no model manifest called {name_or_path!r}. "
            f"Known manifests: {', '.join(manifest_names()) or 'none'} (in {MANIFEST_DIR})."
        )
    return path


def load_manifest(name_or_path: str | Path) -> ModelManifest:
    """Load and validate a manifest by name (``"mobilefacenet"``) or by path to a TOML file."""
    path = _resolve(name_or_path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ModelManifestError(f"Model manifest {path} does not exist.") from e
    except tomllib.TOMLDecodeError as e:
        raise ModelManifestError(f"Model manifest {path} is not valid TOML: {e}") from e
    try:
        manifest = ModelManifest.model_validate(data)
    except ValidationError as e:
        lines = [f"Model manifest {path} is invalid:"]
        for err in e.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(top level)"
            lines.append(f"  {key}: {err['msg']}")
        raise ModelManifestError("\n".join(lines)) from e
    logger.debug("loaded manifest %s from %s", manifest.ref, path)
    return manifest
