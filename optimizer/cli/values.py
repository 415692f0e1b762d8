"""The values of command-line options that argparse checks as it parses: counts and merge weights. A bad value is
refused with one line and exit code 2, like any other bad input."""

from __future__ import annotations

import argparse
import math
import struct

FLOAT32_MAX = 3.4028234663852886e38  # the largest finite float32: merges are computed in float32


def positive(text: str) -> int:
    """A count of at least 1 (argparse refuses anything else with exit code 2)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def port(text: str) -> int:
    """A TCP port number, 1 to 65535."""
    value = positive(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be at most 65535 (a TCP port), got {value}")
    return value


def _finite(name: str, value: str, weight: float) -> float:
    """A weight the float32 merge can use; anything else would write a non-finite model."""
    if math.isnan(weight):
        raise argparse.ArgumentTypeError(f"{name}={value} is not a number; give each weight as a finite number")
    if math.isinf(weight):
        raise argparse.ArgumentTypeError(f"{name}={value} is infinite; give each weight as a finite number")
    if abs(weight) > FLOAT32_MAX:
        raise argparse.ArgumentTypeError(
            f"{name}={value} is beyond float32's range (±{FLOAT32_MAX:.1e}), in which the merge is computed; give a smaller weight"
        )
    if weight != 0 and struct.unpack("f", struct.pack("f", weight))[0] == 0:
        raise argparse.ArgumentTypeError(
            f"{name}={value} rounds to 0 in float32, in which the merge is computed; give 0 or a weight of at least 1.4e-45"
        )
    return weight


def weights(text: str) -> dict[str, float]:
    """``name=w,name=w`` into a mapping. argparse refuses (exit 2) a malformed pair, a name given twice (which value
    would be meant?), a weight that is not a finite float32, and all weights 0 (a model of none of the members)."""
    out: dict[str, float] = {}
    for pair in text.split(","):
        name, sep, value = (part.strip() for part in pair.partition("="))
        try:
            weight = float(value)
        except ValueError:
            sep = ""
        if not sep or not name:
            raise argparse.ArgumentTypeError(f"'{pair}' is not name=weight (e.g. --weights add=0.6,sort=0.4)")
        if name in out:
            raise argparse.ArgumentTypeError(
                f"'{name}' is given twice ({out[name]:g} and {weight:g}); give each member once"
            )
        out[name] = _finite(name, value, weight)
    if not any(out.values()):
        raise argparse.ArgumentTypeError(
            "every weight is 0, so the merge would hold none of the members; give at least one member a nonzero weight"
        )
    return out
