"""Training: the loop (`fit`, `train_step`, `evaluate`, `predict`) and its helpers, one file each:
its config (`TrainConfig`), precision, schedule, checkpoint, distributed, live plot, model cards,
and the `train` command."""
from .checkpoint import CheckpointError, export_model, load_checkpoint, load_model, load_pretrained, save_checkpoint
from .config import TrainConfig
from .loop import TrainingDiverged, TrainResult, evaluate, fit, make_optimizer, predict, train_step
