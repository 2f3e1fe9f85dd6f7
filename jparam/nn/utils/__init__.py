"""``jparam.nn.utils``: gradient clipping and parameter-vector helpers."""
from jparam.nn.utils.clip_grad import clip_grad_norm_, clip_grad_value_  # noqa: F401
