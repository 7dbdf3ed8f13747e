"""Looking inside a trained model: attention capture, rollout, attention distance, position
similarity, patch-embedding filters, confusion matrices, and their plots (the ViT paper's Figures 6
and 7); layer representations, CKA and corrupted inputs (Raghu et al., "Do ViTs see like CNNs?").
Plain functions of tensors; the ipywidgets explorers that draw them live in `vitcourse.analysis.widgets`,
which this package does not import (analysis never needs widgets)."""
from .capture import attention_modules, capture_attention, explicit_attention, prepare_images
from .cka import MinibatchCKA, cka_matrix, hsic_unbiased, linear_cka
from .confusion import accuracy, confusion_matrix, per_class_accuracy, plot_confusion_matrix, plot_misclassified
from .corruptions import (band_filter, fgsm, frequency_radius, gaussian_noise, high_pass, low_pass,
                          patch_drop, patch_drop_mask, patch_shuffle, pgd, pixels_to_input)
from .distance import mean_attention_distance, model_attention_distance, patch_distances, token_pitch
from .plots import (overlay_attention, plot_embedding_filters, plot_mean_attention_distance,
                    plot_position_similarity, similarity_mosaic, upsample_map)
from .position import embedding_filters, position_similarity
from .representations import default_layers, iter_layer_outputs, layer_outputs
from .rollout import HEAD_FUSIONS, attention_rollout, rollout_matrix
from .tokens import AttentionList, infer_prefix_tokens
