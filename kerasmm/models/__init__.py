"""The model families, one folder each: backbone, preprocessor, task, presets (zoo entries) and serving.

Example:
```python
import kerasmm
model = kerasmm.zoo.get("tiny_captioner")
isinstance(model, kerasmm.models.Captioner), type(model.backbone).__name__   # (True, 'CaptionerBackbone')
```
"""

from kerasmm.models.captioner.captioner_backbone import CaptionerBackbone  # noqa: F401
from kerasmm.models.captioner.captioner_preprocessor import CaptionerPreprocessor  # noqa: F401
from kerasmm.models.captioner.captioner_task import Captioner  # noqa: F401
from kerasmm.models.captioner.generative_vqa_task import GenerativeVQA  # noqa: F401
from kerasmm.models.classifier.classifier_backbone import MultimodalBackbone  # noqa: F401
from kerasmm.models.classifier.classifier_task import MultimodalClassifier  # noqa: F401
from kerasmm.models.dual_encoder.dual_encoder_backbone import DualEncoderBackbone  # noqa: F401
from kerasmm.models.dual_encoder.dual_encoder_preprocessor import PretrainedDualEncoderPreprocessor  # noqa: F401
from kerasmm.models.dual_encoder.dual_encoder_task import DualEncoder, PretrainedDualEncoder  # noqa: F401
from kerasmm.models.dual_encoder.pretrained_dual_encoder_backbone import PretrainedDualEncoderBackbone  # noqa: F401
from kerasmm.models.multimodal_preprocessor import MultimodalPreprocessor  # noqa: F401
from kerasmm.models.task import ZooTask  # noqa: F401
from kerasmm.models.text_to_image.text_to_image_backbone import TextToImageBackbone  # noqa: F401
from kerasmm.models.text_to_image.text_to_image_preprocessor import TextToImagePreprocessor  # noqa: F401
from kerasmm.models.text_to_image.text_to_image_task import TextToImage  # noqa: F401
