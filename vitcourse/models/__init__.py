"""Model families (one file each: `vit`, `t2t`, `swin`, `cnn`, `metaformer`, `cct`,
`small_data_vit`), the registry (`create_model`, `list_models`) and the weight converters next to
the families they convert. A model module imports from `vitcourse.layers`, never from training,
data, analysis or widgets."""
from .cct import CCT, CCTConfig
from .cnn import ResNet, ResNetConfig
from .convert import from_torchvision, from_torchvision_swin
from .metaformer import MetaFormer, MetaFormerConfig
from .metaformer_weights import metaformer_from_timm
from .registry import create_model, get_builder, list_models
from .small_data_vit import SmallDataViT, SmallDataViTConfig
from .swin import SwinConfig, SwinTransformer
from .t2t import T2TViT, T2TViTConfig
from .vit import ViT, ViTConfig
from .vit_weights import from_timm
