"""The building blocks every model family shares: patches, attention, the MLP and encoder block,
the MetaFormer block with its token mixers and norms, position embeddings, and the CPU-friendly
dropout; for the small-data models, convolutional stems, shifted patch tokenization, locality
self-attention, sequence pooling and stochastic depth. Nothing here imports training, data or analysis."""
from .attention import AttentionProbe, MultiHeadSelfAttention, attention_weights, scaled_dot_product_attention
from .blocks import MLP, EncoderBlock
from .conv_stem import CCTTokenizer, ConvStem
from .drop_path import DropPath, drop_path, drop_path_rates
from .dropout import Dropout
from .lsa import LocalitySelfAttention, diagonal_mask, locality_attention_weights
from .metaformer import LayerScale, MetaFormerBlock
from .mixers import MIXERS, make_mixer
from .norms import NORMS, make_norm
from .patches import PatchEmbed, patchify, unpatchify
from .pos_embed import resample_pos_embed, sincos_1d, sincos_2d
from .sequence_pool import SeqPool, sequence_pool
from .spt import ShiftedPatchTokenization, shifted_images
