"""The function {{name}}: exports the world `app:function/function` (wit/world.wit)."""

import wit_world
from componentize_py_types import Err

S32 = range(-(2**31), 2**31)


class WitWorld(wit_world.WitWorld):
    def greet(self, name: str) -> str:
        return f"Hello, {name}!"

    def add(self, a: int, b: int) -> int:
        if a + b not in S32:
            raise Err(f"{a} + {b} does not fit in an s32")
        return a + b
