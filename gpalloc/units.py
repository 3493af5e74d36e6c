"""Size strings ("4G", "512M", "2048k") as the kernel command line writes them (memparse)."""

_SUFFIX = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_MAX_DIGITS = 20   # 2**64 bytes has 20: more is no size, and int() refuses past 4,300 digits


def memparse(value, name="size"):
    """Bytes in ``value`` (int, or a string like "4G"); ValueError names ``name``."""
    if isinstance(value, bool):
        raise ValueError(f"{name}: expected a size like '4G' or a number of bytes, got {value!r}")
    if isinstance(value, int):
        n = value
    elif isinstance(value, str):
        text = value.strip().upper().removesuffix("B").removesuffix("I")
        num, suffix = text, ""
        if text and text[-1] in "KMGT":
            num, suffix = text[:-1], text[-1]
        # ASCII digits only: str.isdigit() also takes '²', which int() refuses
        if not (num.isascii() and num.isdigit()) or len(num) > _MAX_DIGITS:
            raise ValueError(
                f"{name}: cannot read size {value!r}; write a number with an optional "
                "K/M/G/T suffix, e.g. '4G'")
        n = int(num) * _SUFFIX[suffix]
    else:
        raise ValueError(f"{name}: expected a size like '4G', got {type(value).__name__} {value!r}")
    if n <= 0:
        raise ValueError(f"{name}: must be positive, got {value!r}")
    return n
