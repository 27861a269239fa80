"""Test guest: touches what componentize-py's runtime imports from WASI (files, sockets, the
environment) so that the tests see each denied at the call, not at instantiation."""

import os
import socket

import wit_world
from componentize_py_types import Err


class WitWorld(wit_world.WitWorld):
    def read_file(self, path: str) -> str:
        try:
            with open(path) as file:
                return file.read()
        except OSError as error:
            raise Err(f"{type(error).__name__}: {error}")

    def connect(self, host: str, port: int) -> None:
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as connection:
                connection.connect((host, port))
        except OSError as error:
            raise Err(f"{type(error).__name__}: {error}")

    def environment(self) -> list[tuple[str, str]]:
        return sorted(os.environ.items())
