"""A strict reader of the numeric matrices in MATLAB MAT-files (v4 and v5).

Data files are untrusted input: scipy's loadmat segfaults on some malformed
v5 files (a forged element type in a 2 KB file). This reader checks every
tag against the bytes that are there before it allocates anything, reads
numeric matrices only (double, single, integer and logical classes, in the
type their values are stored in, as scipy gives them; the toolbox's data
files hold nothing else), and raises ValueError naming the
file for anything else. Format: The MathWorks, "MAT-File Format" (version
7, 2019), chapters 1 (v4) and 2-4 (v5). v7.3 files are HDF5 and are read by
h5py elsewhere.
"""
import struct
import zlib

import numpy as np

#: v5 data types (miINT8 ... miUINT64) and their numpy dtypes
_MI = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8", 13: "u8"}
_MI_MATRIX, _MI_COMPRESSED = 14, 15
#: v5 numeric array classes (mxDOUBLE_CLASS ... mxUINT64_CLASS) and their numpy dtypes
_MX = {6: "f8", 7: "f4", 8: "i1", 9: "u1", 10: "i2", 11: "u2", 12: "i4", 13: "u4", 14: "i8", 15: "u8"}
_COMPLEX = 0x800
#: zlib cannot expand data more than about 1032 times: a larger declared size is forged
_ZLIB_MAX_RATIO = 1032
#: v4 precisions (the P digit of MOPT) and their dtypes
_V4 = {0: "f8", 1: "f4", 2: "i4", 3: "i2", 4: "u2", 5: "u1"}


class _Bad(ValueError):
    pass


def read_matrices(path):
    """{name: array} of every numeric matrix of the MAT-file at ``path``
    (v4 or v5). Raises ValueError naming the file when it is malformed."""
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        if len(data) >= 128 and data[124:126] in (b"\x00\x01", b"\x01\x00") and data[126:128] in (b"IM", b"MI"):
            return _read_v5(data)
        if len(data) >= 4 and 0 in data[:4]:
            return _read_v4(data)
        raise _Bad("not a MAT-file of version 4 or 5 (v7.3 files are HDF5)")
    except _Bad as error:
        raise ValueError(f"{path}: malformed MAT-file: {error}") from None


# ---------------------------------------------------------------- v5
def _read_v5(data):
    endian = "<" if data[126:128] == b"IM" else ">"
    out, pos = {}, 128
    while pos + 8 <= len(data):
        kind, size, start, stop = _tag(data, pos, endian)
        if kind == _MI_COMPRESSED:
            element = _inflate(data[start:stop], endian)
            inner_kind, inner_size, inner_start, inner_stop = _tag(element, 0, endian)
            if inner_kind != _MI_MATRIX:
                raise _Bad(f"a compressed element holds type {inner_kind}, not a matrix")
            _matrix(element[inner_start:inner_stop], endian, out)
            pos = stop  # compressed elements are not padded
        elif kind == _MI_MATRIX:
            _matrix(data[start:stop], endian, out)
            pos = start + _padded(size)
        else:
            raise _Bad(f"top-level element of type {kind} at byte {pos}; expected a matrix")
    return out


def _tag(data, pos, endian):
    """(type, size, data start, data stop) of the element at ``pos``, checked
    against the bytes that follow."""
    if pos + 8 > len(data):
        raise _Bad(f"truncated element tag at byte {pos}")
    word = struct.unpack_from(endian + "I", data, pos)[0]
    if word >> 16:  # small data element: size and type in one word, data in the next 4 bytes
        kind, size = word & 0xFFFF, word >> 16
        if size > 4:
            raise _Bad(f"small element of {size} bytes at byte {pos}")
        return kind, size, pos + 4, pos + 4 + size
    size = struct.unpack_from(endian + "I", data, pos + 4)[0]
    if size > len(data) - pos - 8:
        raise _Bad(f"element at byte {pos} declares {size} bytes, {len(data) - pos - 8} follow")
    return word, size, pos + 8, pos + 8 + size


def _padded(size):
    return (size + 7) // 8 * 8


def _next(pos, start, size):
    """Where the element after the one at ``pos`` starts (small elements take
    8 bytes, others their data padded to 8 bytes)."""
    return pos + 8 if start == pos + 4 else start + _padded(size)


def _inflate(compressed, endian):
    """The element in a miCOMPRESSED payload, inflated no further than the
    size its tag declares (and refused if zlib could not expand that much)."""
    decompressor = zlib.decompressobj()
    try:
        head = decompressor.decompress(compressed, 8)
        if len(head) < 8:
            raise _Bad("compressed element too short")
        declared = struct.unpack(endian + "I", head[4:8])[0]
        if declared > _ZLIB_MAX_RATIO * len(compressed):
            raise _Bad(f"a compressed element of {len(compressed)} bytes declares {declared}, more than "
                       f"zlib can expand to")
        rest = decompressor.decompress(decompressor.unconsumed_tail, declared)
    except zlib.error as error:
        raise _Bad(f"compressed element cannot be inflated ({error})") from None
    if len(rest) < declared:
        raise _Bad(f"a compressed element declares {declared} bytes and inflates to {len(rest)}")
    return head + rest


def _matrix(body, endian, out):
    """Add the numeric matrix in a miMATRIX element's body to ``out``."""
    pos = 0
    kind, size, start, stop = _tag(body, pos, endian)
    if kind != 6 or size != 8:
        raise _Bad("a matrix must start with its array flags")
    flags = struct.unpack_from(endian + "I", body, start)[0]
    pos = _next(pos, start, size)
    kind, size, start, stop = _tag(body, pos, endian)
    if kind != 5 or size % 4 or size < 8:
        raise _Bad("a matrix needs its dimensions (at least 2, int32)")
    dims = struct.unpack_from(endian + f"{size // 4}i", body, start)
    if min(dims) < 0:
        raise _Bad(f"negative dimensions {dims}")
    pos = _next(pos, start, size)
    kind, size, start, stop = _tag(body, pos, endian)
    if kind not in (1, 2):
        raise _Bad("a matrix needs its name (int8)")
    name = bytes(body[start:stop]).decode("latin1")
    pos = _next(pos, start, size)
    mx = flags & 0xFF
    if mx not in _MX:
        return  # cells, structs, text, sparse, objects: not data
    if flags & _COMPLEX:
        raise _Bad(f"variable {name!r} is complex")
    kind, size, start, stop = _tag(body, pos, endian)
    if kind not in _MI:
        raise _Bad(f"variable {name!r} holds values of type {kind}")
    stored = np.dtype(_MI[kind]).newbyteorder(endian)
    count = 1
    for d in dims:
        count *= d
    if size != count * stored.itemsize:
        raise _Bad(f"variable {name!r} of {dims} needs {count * stored.itemsize} bytes, holds {size}")
    # the values keep the type they are stored in, as scipy's loadmat gives
    # them (the toolbox's MNIST digits: a double matrix stored as uint8)
    values = np.frombuffer(body, dtype=stored, count=count, offset=start)
    out[name] = values.astype(stored.newbyteorder("=")).reshape(dims, order="F")


# ---------------------------------------------------------------- v4
def _read_v4(data):
    out, pos = {}, 0
    while pos < len(data):
        if pos + 20 > len(data):
            raise _Bad(f"truncated matrix header at byte {pos}")
        mopt = struct.unpack_from("<i", data, pos)[0]
        endian = "<"
        if not 0 <= mopt < 5000:
            mopt, endian = struct.unpack_from(">i", data, pos)[0], ">"
        if not 0 <= mopt < 5000:
            raise _Bad(f"matrix type {mopt} at byte {pos}")
        machine, zero, precision, kind = mopt // 1000, mopt // 100 % 10, mopt // 10 % 10, mopt % 10
        if machine > 1 or zero or precision not in _V4 or kind:
            raise _Bad(f"matrix type {mopt} at byte {pos} (numeric full matrices only)")
        rows, columns, imaginary, name_length = struct.unpack_from(endian + "4i", data, pos + 4)
        if rows < 0 or columns < 0 or name_length < 1 or imaginary not in (0, 1):
            raise _Bad(f"matrix header at byte {pos}")
        if imaginary:
            raise _Bad(f"complex matrix at byte {pos}")
        dtype = np.dtype(_V4[precision]).newbyteorder("<" if machine == 0 else ">")
        start = pos + 20 + name_length
        stop = start + rows * columns * dtype.itemsize
        if stop > len(data):
            raise _Bad(f"matrix at byte {pos} declares {rows} x {columns}, the file ends first")
        name = data[pos + 20:start].rstrip(b"\x00").decode("latin1")
        values = np.frombuffer(data, dtype=dtype, count=rows * columns, offset=start)
        out[name] = values.astype(dtype.newbyteorder("=")).reshape((rows, columns), order="F")
        pos = stop
    return out
