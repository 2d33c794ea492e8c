"""Face models: manifests, conversion to OpenVINO IR, decoding, detection, alignment, embedding.

Everything model-specific (files, checksums, input format, licence) lives in a
manifest under ``models/manifests/`` so a site can swap in a licensed model by
adding a manifest rather than editing code. ``models.pipeline.FacePipeline`` is
the entry point for callers; importing this package alone loads no runtime.
"""
