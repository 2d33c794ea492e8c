"""``python -m models.fit_fusion --faces DIR --detector D --embedder A --embedder B``: fused-template weights.

Runs the embedders on the same detections of a labelled folder (the
development set, never the held-out one), measures each one's impostor score
spread leave-one-out, and prints the ``[[components]]`` tables for a fused
manifest (``models/manifests/fused/``), weights per ``models.fusion.fit_weights``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from core.errors import CustodyRfrError
from models.evaluation.metrics import pair_scores
from models.evaluation.runner import run
from models.fusion import fit_weights
from models.pipeline import FacePipeline


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.fit_fusion", description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, required=True)
    parser.add_argument("--detector", required=True)
    parser.add_argument("--embedder", action="append", required=True)
    args = parser.parse_args(argv)
    try:
        scores = impostor_scores(args.faces, args.detector, args.embedder)
    except (CustodyRfrError, FileNotFoundError) as e:
        print(f"fit_fusion: {e}", file=sys.stderr)
        return 2
    weights = fit_weights(list(scores.values()))
    for (name, imp), weight in zip(scores.items(), weights, strict=True):
        print(f"# {name}: {imp.size} impostor pairs, mean {imp.mean():.4f}, std {imp.std():.4f}")
        print(f'[[components]]\nembedder = "{name}"\nweight = {weight:.4f}\n')
    return 0


if __name__ == "__main__":
    sys.exit(main())
