"""Chest X-ray classifiers used as frozen encoders: the VQ-GAN feature loss and clinical agreement.

Two architectures behind one interface (`CXREncoder`):

* ``densenet121-xrv``: DenseNet-121 with TorchXRayVision's weight layout, loaded from a local
  state dict (safetensors, or a ``.pt``/``.pth`` state dict); see `radllm.encoders.storage` for
  the one-line conversion of xrv's pickled downloads. Its 18 outputs are exposed under the
  CheXpert names they correspond to.
* ``small-cnn``: a small classifier trained here (``radllm train-cxr-encoder``) on any manifest,
  e.g. the phantoms.

Nothing is downloaded: `load_cxr_encoder` reads a directory (config.json + model.safetensors) or a
bare xrv weights file.
"""

from radllm.encoders.agreement import clinical_agreement, finding_aurocs
from radllm.encoders.encoder import CXREncoder
from radllm.encoders.spec import EncoderSpec
from radllm.encoders.storage import load_cxr_encoder, save_cxr_encoder

__all__ = ["CXREncoder", "EncoderSpec", "clinical_agreement", "finding_aurocs", "load_cxr_encoder", "save_cxr_encoder"]
