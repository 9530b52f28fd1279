"""divrec: diversity-aware recommendation with pretrained language models."""

import os as _os

# Set before any divrec module uses tokenizers (a value the user exported wins): its Rust
# thread pool does not survive the fork of DataLoader workers (warnings, then dead-locks).
_os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

__version__ = "0.1.0"
