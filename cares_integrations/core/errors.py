"""Typed errors raised by cares-integrations."""


class CaresError(Exception):
    """Base class of every error this library raises on purpose."""


class UnknownTargetError(CaresError, ValueError):
    """A target name that no visual-token cost model is registered under."""


class ImageDecodeError(CaresError, ValueError):
    """An image payload that cannot be read: corrupt, not an image, too large, or unreachable.

    The one error type for bad image input; the message says what was wrong and where.
    """


class TooManyImagesError(CaresError, ValueError):
    """A request holding more images than its provider accepts (checked before the call).

    ``limit`` is the provider's documented images-per-request maximum, ``provider`` who sets it
    and ``n_images`` how many the request holds; nothing is dropped to fit.
    """

    def __init__(self, message: str, *, limit: int, provider: str, n_images: int) -> None:
        super().__init__(message)
        self.limit = limit
        self.provider = provider
        self.n_images = n_images


class DecompressionBombError(ImageDecodeError):
    """An image whose pixel count exceeds the configured limit (a decompression bomb guard)."""


class RouterError(CaresError, RuntimeError):
    """A router failed on one image (the original exception is its ``__cause__``).

    Raised, or recorded for that image alone, when a router raises something other than a
    typed error; the other images of the batch are routed as usual.
    """


class ImageSkipped(CaresError):
    """An image deliberately left untouched (a remote URL or local path no policy allows).

    Not a failure: pipelines pass the original through and record ``reason``.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class CheckpointError(CaresError, ValueError):
    """A router checkpoint that is missing, malformed, or inconsistent with its base model."""
