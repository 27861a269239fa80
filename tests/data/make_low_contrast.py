#!/usr/bin/env python3
"""Writes the test images of this folder, deterministically, with the standard library only.

- low-contrast.png: 256x192 8-bit RGB, gentle gradients, soft ripples and a few flat shapes with
  every sample in 100..150: a washed-out picture for contrast equalization (CLAHE) to widen.
- tiny.jpg: 48x32 baseline JPEG (YCbCr 4:4:4, quality 90), left half red, right half blue, with a
  gentle vertical gradient; a small JPEG for decoders.

Run from anywhere: python3 tests/data/make_low_contrast.py
The pixels are the same everywhere; the PNG's bytes also depend on the zlib the Python links.
"""

import math
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))


def low_contrast_pixel(x, y, width, height):
    """The RGB of pixel (x, y): gentle gradients, soft ripples (detail in every 32x24 tile for
    CLAHE to stretch), a lighter disc, a darker square and a lighter diagonal stripe."""
    fx, fy = x / (width - 1), y / (height - 1)
    ripple = 9 * math.sin(x / 4.0) * math.cos(y / 5.0)
    r = 110 + 14 * fx + 4 * math.sin(3.0 * fy) + ripple
    g = 114 + 10 * fy + 6 * fx * fy + ripple
    b = 124 + 8 * (1 - fx) + 3 * math.cos(4.0 * fx) + 0.5 * ripple
    shade = 0.0
    if (x - 0.68 * width) ** 2 + (y - 0.38 * height) ** 2 < (0.18 * height) ** 2:
        shade += 8  # disc
    if 0.12 * width <= x < 0.34 * width and 0.55 * height <= y < 0.85 * height:
        shade -= 7  # square
    if abs((x - 0.5 * width) - 0.6 * (y - 0.5 * height)) < 5:
        shade += 5  # diagonal stripe
    return tuple(max(100, min(150, int(round(c + shade)))) for c in (r, g, b))


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png(path, width, height, pixel):
    """An 8-bit RGB PNG; every row with the Sub filter (smooth rows compress well)."""
    raw = bytearray()
    for y in range(height):
        row = [c for x in range(width) for c in pixel(x, y, width, height)]
        raw.append(1)  # filter: Sub
        raw.extend((v - (row[i - 3] if i >= 3 else 0)) & 0xFF for i, v in enumerate(row))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(bytes(raw), 9))
    data += png_chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(data)
    return len(data)


# --- a minimal baseline JPEG encoder -----------------------------------------------------------

def zigzag():
    """Natural (row-major) index of each zigzag position."""
    order = []
    for s in range(15):
        rows = range(min(s, 7), max(0, s - 7) - 1, -1) if s % 2 == 0 else range(max(0, s - 7), min(s, 7) + 1)
        order.extend(i * 8 + (s - i) for i in rows)
    return order


ZIGZAG = zigzag()

# Annex K.1 quantization tables, row-major.
LUMA_Q = [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
          14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
          49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]
CHROMA_Q = [17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
            47, 66, 99, 99, 99, 99, 99, 99] + [99] * 32


def scaled(table, quality):
    scale = 200 - 2 * quality if quality >= 50 else 5000 // quality
    return [max(1, min(255, (q * scale + 50) // 100)) for q in table]


# Huffman tables with fixed-length codes: simple and valid (no code is all ones). DC: the 12
# magnitude categories, 4 bits each; AC: end-of-block, zero-run-16 and every (run, size), 8 bits.
DC_SYMBOLS = list(range(12))
AC_SYMBOLS = [0x00, 0xF0] + [(run << 4) | size for run in range(16) for size in range(1, 11)]


def huffman(symbols, length):
    bits = [0] * 16
    bits[length - 1] = len(symbols)
    return bits, symbols, {s: (code, length) for code, s in enumerate(symbols)}


DC_TABLE = huffman(DC_SYMBOLS, 4)
AC_TABLE = huffman(AC_SYMBOLS, 8)


class BitWriter:
    def __init__(self):
        self.out = bytearray()
        self.acc = 0
        self.n = 0

    def write(self, value, length):
        for i in range(length - 1, -1, -1):
            self.acc = (self.acc << 1) | ((value >> i) & 1)
            self.n += 1
            if self.n == 8:
                self.out.append(self.acc)
                if self.acc == 0xFF:
                    self.out.append(0)  # byte stuffing
                self.acc, self.n = 0, 0

    def flush(self):
        if self.n:
            self.write((1 << (8 - self.n)) - 1, 8 - self.n)  # pad with ones


def category(v):
    return abs(v).bit_length()


def magnitude_bits(v):
    size = category(v)
    return (v if v >= 0 else v + (1 << size) - 1), size


COS = [[math.cos((2 * x + 1) * u * math.pi / 16) for x in range(8)] for u in range(8)]


def fdct_quantize(block, q):
    """Zigzag-ordered quantized DCT coefficients of a level-shifted 8x8 block."""
    coeffs = [0] * 64
    for v in range(8):
        for u in range(8):
            s = sum(block[y * 8 + x] * COS[u][x] * COS[v][y] for y in range(8) for x in range(8))
            cu = math.sqrt(0.5) if u == 0 else 1.0
            cv = math.sqrt(0.5) if v == 0 else 1.0
            coeffs[v * 8 + u] = int(round(0.25 * cu * cv * s / q[v * 8 + u]))
    return [coeffs[i] for i in ZIGZAG]


def encode_block(bits, zz, previous_dc):
    diff = zz[0] - previous_dc
    value, size = magnitude_bits(diff)
    bits.write(*DC_TABLE[2][size])
    bits.write(value, size)
    run = 0
    for c in zz[1:]:
        if c == 0:
            run += 1
            continue
        while run >= 16:
            bits.write(*AC_TABLE[2][0xF0])
            run -= 16
        value, size = magnitude_bits(c)
        bits.write(*AC_TABLE[2][(run << 4) | size])
        bits.write(value, size)
        run = 0
    if run:
        bits.write(*AC_TABLE[2][0x00])
    return zz[0]


def segment(marker, payload):
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def write_jpeg(path, width, height, pixel, quality=90):
    assert width % 8 == 0 and height % 8 == 0
    tables = [scaled(LUMA_Q, quality), scaled(CHROMA_Q, quality)]
    planes = [[], [], []]
    for y in range(height):
        for x in range(width):
            r, g, b = pixel(x, y, width, height)
            planes[0].append(0.299 * r + 0.587 * g + 0.114 * b - 128)
            planes[1].append(-0.168736 * r - 0.331264 * g + 0.5 * b)
            planes[2].append(0.5 * r - 0.418688 * g - 0.081312 * b)
    bits = BitWriter()
    dc = [0, 0, 0]
    for by in range(0, height, 8):
        for bx in range(0, width, 8):
            for c in range(3):
                block = [planes[c][(by + y) * width + bx + x] for y in range(8) for x in range(8)]
                dc[c] = encode_block(bits, fdct_quantize(block, tables[min(c, 1)]), dc[c])
    bits.flush()

    out = b"\xff\xd8"
    out += segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
    for i, table in enumerate(tables):
        out += segment(0xDB, bytes([i]) + bytes(table[n] for n in ZIGZAG))
    out += segment(0xC0, struct.pack(">BHHB", 8, height, width, 3) + bytes([1, 0x11, 0, 2, 0x11, 1, 3, 0x11, 1]))
    for kind, (counts, symbols, _) in ((0x00, DC_TABLE), (0x10, AC_TABLE)):
        out += segment(0xC4, bytes([kind]) + bytes(counts) + bytes(symbols))
    out += segment(0xDA, bytes([3, 1, 0x00, 2, 0x00, 3, 0x00, 0, 63, 0]))
    out += bytes(bits.out) + b"\xff\xd9"
    with open(path, "wb") as f:
        f.write(out)
    return len(out)


def tiny_pixel(x, y, width, height):
    """Left half red, right half blue, a little lighter towards the bottom."""
    lift = 20 * y // (height - 1)
    return (210 + lift, 40 + lift, 40 + lift) if x < width // 2 else (40 + lift, 40 + lift, 210 + lift)


if __name__ == "__main__":
    size = write_png(os.path.join(HERE, "low-contrast.png"), 256, 192, low_contrast_pixel)
    print(f"low-contrast.png: {size} bytes")
    size = write_jpeg(os.path.join(HERE, "tiny.jpg"), 48, 32, tiny_pixel)
    print(f"tiny.jpg: {size} bytes")
