"""Example guest in Python: the hello greeter, a counter, a config value, a bucket write and
grayscale, exporting the world `example:hello/hello-plus` (../hello/wit/world.wit), which includes
every host import (../../wit). Built into a component by componentize-py (see host.toml)."""

from contextlib import contextmanager

import wit_world
from componentize_py_types import Err
from wit_world.imports import atomics, buckets, wasi_config_store, wasi_keyvalue_store

# OpenCV's COLOR_BGR2GRAY weights in 14-bit fixed point: round(0.299, 0.587, 0.114 * 2^14).
R, G, B = 4899, 9617, 1868


@contextmanager
def host_errors():
    """Turns a host error (a WIT variant such as `Error_AccessDenied` or `Error_Other("...")`)
    into the readable message our exports fail with."""
    try:
        yield
    except Err as error:
        case = type(error.value).__name__.split("_", 1)[-1]
        words = "".join(" " + c.lower() if c.isupper() else c for c in case).strip()
        detail = getattr(error.value, "value", None)
        raise Err(f"{words}: {detail}" if detail is not None else words)


class WitWorld(wit_world.WitWorld):
    def greet(self, who: wit_world.Person) -> str:
        if not who.name:
            raise Err("name must not be empty")
        name = who.name if who.nickname is None else who.nickname
        return f"Hello, {name}! You are {who.age}."

    def noop(self) -> None:
        pass

    def count(self, key: str, by: int) -> int:
        with host_errors(), wasi_keyvalue_store.open("default") as store:
            return atomics.increment(store, key, by)

    def greeting(self) -> str:
        with host_errors():
            greeting = wasi_config_store.get("greeting")
        if greeting is None:
            raise Err('config key "greeting" is not set')
        return greeting

    def save_note(self, name: str, text: str) -> int:
        with host_errors():
            notes = buckets.open("notes")
            notes.write(name, text.encode())
            return notes.stat(name).size

    def gray(self, rgb: bytes) -> bytes:
        if len(rgb) % 3:
            raise Err(f"rgb has {len(rgb)} bytes: not whole pixels of 3 bytes (R, G, B)")
        pixels = zip(rgb[0::3], rgb[1::3], rgb[2::3])
        return bytes((r * R + g * G + b * B + (1 << 13)) >> 14 for r, g, b in pixels)
