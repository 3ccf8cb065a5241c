"""Application core (Qt-free): config and paths, storage, conversations, documents,
the privacy guard's installation, the `assistant` command line and the composition root.

The privacy guard goes in before anything else is imported, so that no library that reads
the offline variables (transformers, huggingface_hub) can see them unset.
"""

from engine import privacy as _privacy

_privacy.install()

APP_NAME = "Local Assistant"
APP_ID = "local-assistant"
