"""``jparam.utils``: counterparts of ``torch.utils`` (``checkpoint``)."""
from jparam.utils import checkpoint  # noqa: F401
