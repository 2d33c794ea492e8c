"""``python -m models.fit_fusion --faces DIR (--detector D --embedder A --embedder B | --fused NAME)``: fusion weights.

Runs the embedders on the same faces of a labelled folder (the development
set, never the held-out one), measures each one's impostor score spread, and
prints the ``[[components]]`` tables for a fused manifest
(``models/manifests/fused/``), weights per ``models.fusion.fit_weights``.

``--fused NAME`` takes the parts from a fused manifest instead, each on the
faces that manifest gives it (a part with a detector of its own gets that
detector's box for the same face, ``models.face_match``), and for two parts
also prints a grid: TAR at FAR 1e-3 of ``a * cos_1 + (1 - a) * cos_2`` for
``a`` from 0 to 1 in steps of 0.05, with the weights ``sqrt(a)``, ``sqrt(1 - a)``
that give it; for three or more parts, the best shares on the same grid over
the simplex (shares summing to 1, weights their square roots). A weight
picked from that grid is fitted and measured on the same set, so its figure
is optimistic; say so wherever it is quoted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from core.errors import CustodyRfrError
from models.evaluation.metrics import pair_scores, tar_at, threshold_at_far
from models.evaluation.runner import labelled_images, run
from models.fusion import FusedEmbedder, fit_weights
from models.image import decode_image
from models.pipeline import FacePipeline, default_face_index

GRID_STEP = 0.05
TOP_SHOWN = 10


def impostor_scores(faces: Path, detector: str, embedders: list[str]) -> dict[str, np.ndarray]:
    """Each embedder's impostor cosines over the images every embedder could template."""
    pipelines = [FacePipeline.load(detector=detector, embedder=name) for name in embedders]
    records = [r for r in run(faces, pipelines) if all(p.embedder_id in r.templates for p in pipelines)]
    labels = np.array([r.identity for r in records])
    scores = {}
    for name, pipeline in zip(embedders, pipelines, strict=True):
        templates = np.vstack([r.templates[pipeline.embedder_id] for r in records]).astype(np.float64)
        scores[name] = pair_scores(templates @ templates.T, labels)[1]
    return scores


def part_templates(faces: Path, fused: str) -> tuple[list[str], np.ndarray, list[np.ndarray]]:
    """Part names, labels and one template matrix per part, over the images every part could template."""
    pipeline = FacePipeline.load(embedder=fused)
    embedder = pipeline.embedder
    if not isinstance(embedder, FusedEmbedder):
        raise CustodyRfrError(f"{fused} is not a fused-template manifest")
    labels, rows = [], []
    for identity, path in labelled_images(faces):
        try:
            image = decode_image(path.read_bytes())
            found = pipeline.detect(image)
            if not found:
                continue
            crops = embedder.align(image, found[default_face_index(found)])
            rows.append([part.embed(crop) for part, crop in zip(embedder.components, crops, strict=True)])
        except (CustodyRfrError, OSError, ValueError):
            continue
        labels.append(identity)
    names = [c.embedder for c in embedder.manifest.components]
    return names, np.array(labels), [np.vstack([r[i] for r in rows]).astype(np.float64) for i in range(len(names))]


def simplex(parts: int, step: float = GRID_STEP) -> list[np.ndarray]:
    """Every share vector on a grid of ``step`` whose shares are non-negative and sum to 1."""
    steps = round(1 / step)

    def split(left: int, n: int) -> list[list[int]]:
        return [[left]] if n == 1 else [[k, *rest] for k in range(left + 1) for rest in split(left - k, n - 1)]

    return [np.array(c, dtype=np.float64) / steps for c in split(steps, parts)]


def _mixed(pairs: list[tuple[np.ndarray, np.ndarray]], shares: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Genuine and impostor scores of the share-weighted sum of the parts' cosines (the fused cosine)."""
    return (sum(s * g for s, (g, _) in zip(shares, pairs, strict=True)),
            sum(s * i for s, (_, i) in zip(shares, pairs, strict=True)))


def _tar_at_1e_3(genuine: np.ndarray, impostor: np.ndarray) -> float:
    return tar_at(genuine, threshold_at_far(impostor, 1e-3))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.fit_fusion", description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, required=True)
    parser.add_argument("--detector")
    parser.add_argument("--embedder", action="append")
    parser.add_argument("--fused", help="a fused manifest: fit its parts on the faces it gives each")
    args = parser.parse_args(argv)
    if (args.fused is None) == (args.detector is None or not args.embedder):
        parser.error("give either --fused NAME, or --detector and --embedder (repeated)")
    pairs: list[tuple[np.ndarray, np.ndarray]] = []
    try:
        if args.fused is None:
            scores = impostor_scores(args.faces, args.detector, args.embedder)
        else:
            names, labels, matrices = part_templates(args.faces, args.fused)
            pairs = [pair_scores(m @ m.T, labels) for m in matrices]
            scores = {name: imp for name, (_, imp) in zip(names, pairs, strict=True)}
            print(f"# {len(labels)} images templated by every part")
    except (CustodyRfrError, FileNotFoundError) as e:
        print(f"fit_fusion: {e}", file=sys.stderr)
        return 2
    weights = fit_weights(list(scores.values()))
    for (name, imp), weight in zip(scores.items(), weights, strict=True):
        print(f"# {name}: {imp.size} impostor pairs, mean {imp.mean():.4f}, std {imp.std():.4f}")
        print(f'[[components]]\nembedder = "{name}"\nweight = {weight:.4f}\n')
    if len(pairs) == 2:
        (gen1, imp1), (gen2, imp2) = pairs
        fitted = weights[0] ** 2 / (weights[0] ** 2 + weights[1] ** 2)
        print(f"# inverse-sd weights: a = {fitted:.3f}, TAR at FAR 1e-3 "
              f"{_tar_at_1e_3(fitted * gen1 + (1 - fitted) * gen2, fitted * imp1 + (1 - fitted) * imp2):.4f}")
        for a in np.round(np.arange(0, 1 + GRID_STEP / 2, GRID_STEP), 2):
            tar = _tar_at_1e_3(a * gen1 + (1 - a) * gen2, a * imp1 + (1 - a) * imp2)
            print(f"# a = {a:.2f} (weights {np.sqrt(a):.4f}, {np.sqrt(1 - a):.4f}): TAR at FAR 1e-3 {tar:.4f}")
    elif len(pairs) > 2:
        fitted = np.array(weights) ** 2 / np.sum(np.array(weights) ** 2)
        print(f"# inverse-sd weights: shares {', '.join(f'{f:.3f}' for f in fitted)}, TAR at FAR 1e-3 "
              f"{_tar_at_1e_3(*_mixed(pairs, fitted)):.4f}")
        ranked = sorted(((_tar_at_1e_3(*_mixed(pairs, shares)), tuple(shares)) for shares in simplex(len(pairs))),
                        reverse=True)
        for tar, shares in ranked[:TOP_SHOWN]:
            print(f"# shares {', '.join(f'{s:.2f}' for s in shares)} (weights "
                  f"{', '.join(f'{np.sqrt(s):.4f}' for s in shares)}): TAR at FAR 1e-3 {tar:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
