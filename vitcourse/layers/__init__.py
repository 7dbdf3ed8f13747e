"""The building blocks every model family shares: patches, attention, the MLP and encoder block,
the MetaFormer block with its token mixers and norms, position embeddings, and the CPU-friendly
dropout. Nothing here imports training, data or analysis."""
from .attention import AttentionProbe, MultiHeadSelfAttention, attention_weights, scaled_dot_product_attention
from .blocks import MLP, EncoderBlock
from .dropout import Dropout
from .metaformer import LayerScale, MetaFormerBlock
from .mixers import MIXERS, make_mixer
from .norms import NORMS, make_norm
from .patches import PatchEmbed, patchify, unpatchify
from .pos_embed import resample_pos_embed, sincos_1d, sincos_2d
