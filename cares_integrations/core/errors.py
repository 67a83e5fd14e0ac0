"""Typed errors raised by cares-integrations."""


class CaresError(Exception):
    """Base class of every error this library raises on purpose."""


class UnknownTargetError(CaresError, ValueError):
    """A target name that no visual-token cost model is registered under."""


class ImageDecodeError(CaresError, ValueError):
    """An image payload that cannot be read: corrupt, not an image, too large, or unreachable.

    The one error type for bad image input; the message says what was wrong and where.
    """


class DecompressionBombError(ImageDecodeError):
    """An image whose pixel count exceeds the configured limit (a decompression bomb guard)."""


class ImageSkipped(CaresError):
    """An image deliberately left untouched (a remote URL with fetching not allowed).

    Not a failure: pipelines pass the original through and record ``reason``.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class CheckpointError(CaresError, ValueError):
    """A router checkpoint that is missing, malformed, or inconsistent with its base model."""
