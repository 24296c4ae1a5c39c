"""Checks on command options that click's own types let through."""

from __future__ import annotations

import math

import click


def finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """An option callback refusing NaN and infinities: `click.FloatRange` lets NaN through (it fails no
    comparison), and an unbounded one infinity, which no duration can hold."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter("give a number")
    return value
