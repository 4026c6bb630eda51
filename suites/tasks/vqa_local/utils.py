"""lm-eval hooks for the local VQA format (see ../README.md); the logic lives in harness.eval.vqa."""

from harness.eval.vqa import doc_to_image, make_loader, process_results  # noqa: F401

# dataset files named in the YAML resolve against this directory, wherever the suite is copied
load_local = make_loader(__file__)
