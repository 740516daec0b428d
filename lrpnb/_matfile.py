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

Compressed elements (miCOMPRESSED) are inflated no further than their
declared size, and only once the total that a file's compressed elements
declare is within the caller's size policy (``check_size``: lrpnb.data_io's
limits, passed in because that module imports this one): a few kilobytes
of deflate must not become gigabytes in memory.

``checked_v5_bytes`` walks the whole element tree of a v5 file (cells,
structs, objects, the opaque MCOS objects and the subsystem that holds
their properties) without decoding it, for the model reader, which hands
the file to mat-io afterwards: mat-io's compiled reader indexes a table by
an element's type unchecked, allocates what dimensions declare and reads
field names up to a NUL, so a forged byte crashes the process.
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


def read_matrices(path, check_size=None):
    """{name: array} of every numeric matrix of the MAT-file at ``path``
    (v4 or v5). Raises ValueError naming the file when it is malformed.

    ``check_size(nbytes, what, file_size)``, when given, is called with the
    running total of bytes the compressed elements declare, before each is
    inflated, and raises a ValueError naming the file when that total is
    more than a file of ``file_size`` bytes may give."""
    data = read_regular(path)
    try:
        if len(data) >= 128 and data[124:126] in (b"\x00\x01", b"\x01\x00") and data[126:128] in (b"IM", b"MI"):
            return _read_v5(data, _Inflated(check_size, len(data)))
        if len(data) >= 4 and 0 in data[:4]:
            return _read_v4(data)
        raise _Bad("not a MAT-file of version 4 or 5 (v7.3 files are HDF5)")
    except _Bad as error:
        raise ValueError(f"{path}: malformed MAT-file: {error}") from None


# ---------------------------------------------------------------- v5
def _read_v5(data, inflated):
    endian = "<" if data[126:128] == b"IM" else ">"
    out, pos = {}, 128
    while pos + 8 <= len(data):
        kind, size, start, stop = _tag(data, pos, endian)
        if kind == _MI_COMPRESSED:
            element = inflated.inflate(data[start:stop], endian)
            inner_kind, inner_size, inner_start, inner_stop = _tag(element, 0, endian)
            if inner_kind != _MI_MATRIX:
                raise _Bad(f"a compressed element holds type {inner_kind}, not a matrix")
            _matrix(memoryview(element)[inner_start:inner_stop], endian, out)
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


class _Inflated:
    """The compressed elements of one file, inflated against its size policy:
    ``check_size(nbytes, what, file_size)`` (or None: zlib's own ratio only)
    sees the running total of what they declare before each is inflated."""

    #: how much a compressed element is inflated at a time
    STEP = 1 << 20

    def __init__(self, check_size, file_size):
        self.check_size, self.file_size, self.total = check_size, file_size, 0

    def inflate(self, compressed, endian):
        """The element in a miCOMPRESSED payload (a bytearray), inflated no further
        than the size its tag declares, refused if zlib could not expand
        that much or if the file's elements together pass the size policy."""
        decompressor = zlib.decompressobj()
        try:
            head = decompressor.decompress(compressed, 8)
            if len(head) < 8:
                raise _Bad("compressed element too short")
            declared = struct.unpack(endian + "I", head[4:8])[0]
            if declared > _ZLIB_MAX_RATIO * len(compressed):
                raise _Bad(f"a compressed element of {len(compressed)} bytes declares {declared}, more than "
                           f"zlib can expand to")
            self.total += 8 + declared
            if self.check_size is not None:
                self.check_size(self.total, "the compressed variables, inflated,", self.file_size)
            element = bytearray(head)
            while len(element) < 8 + declared:
                # bounded steps: only what the stream really holds is allocated
                step = min(self.STEP, 8 + declared - len(element))
                piece = decompressor.decompress(decompressor.unconsumed_tail, step)
                if not piece:
                    break
                element += piece
        except zlib.error as error:
            raise _Bad(f"compressed element cannot be inflated ({error})") from None
        if len(element) < 8 + declared:
            raise _Bad(f"a compressed element declares {declared} bytes and inflates to {len(element) - 8}")
        return element


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


# ---------------------------------------------------------------- files
def read_regular(path):
    """The bytes of ``path``, which must be a regular file (after links):
    a FIFO would block, a device (/dev/zero) never end."""
    with open(path, "rb", opener=_regular_opener) as handle:
        return handle.read()


def _regular_opener(path, flags):
    """os.open that refuses anything but a regular file, checked on the
    opened descriptor (O_NONBLOCK: opening a FIFO does not wait)."""
    import os
    import stat

    if not stat.S_ISREG(os.stat(path).st_mode):
        raise ValueError(f"{path}: not a regular file")
    fd = os.open(path, flags | getattr(os, "O_NONBLOCK", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"{path}: not a regular file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


# ---------------------------------------------------------------- v5 structure
#: the classes a model file may hold (sparse arrays and function handles are refused)
_MX_CELL, _MX_STRUCT, _MX_OBJECT, _MX_CHAR, _MX_OPAQUE = 1, 2, 3, 4, 17
#: char data types mat-io decodes, and their widths (0: variable, UTF-8/16)
_CHAR_TYPES = {1: 1, 2: 1, 4: 2, 16: 0, 17: 0, 18: 4}
_MAX_DEPTH = 64
_MAX_DIMS = 32


def checked_v5_bytes(path, check_size=None):
    """The bytes of the v5 MAT-file at ``path``, after a walk of its whole
    element tree that checks every tag, type and size against the bytes that
    are there. Raises ValueError naming the file when anything is out of
    place; the caller decodes the bytes returned (not the file again).
    ``check_size``: the size policy of compressed elements, as for
    :func:`read_matrices`."""
    data = read_regular(path)
    try:
        if not (len(data) >= 128 and data[124:126] in (b"\x00\x01", b"\x01\x00")
                and data[126:128] in (b"IM", b"MI")):
            if data[:8] == b"\x89HDF\r\n\x1a\n" or data[512:520] == b"\x89HDF\r\n\x1a\n":
                raise _Bad("a MATLAB v7.3 (HDF5) file; models are read from v5 (-v7 or -v6) files")
            raise _Bad("not a MAT-file of version 5")
        _check_v5(data, _Inflated(check_size, len(data)))
    except _Bad as error:
        raise ValueError(f"{path}: malformed MAT-file: {error}") from None
    return data


def _check_v5(data, inflated):
    endian = "<" if data[126:128] == b"IM" else ">"
    if struct.unpack_from(endian + "H", data, 124)[0] != 0x0100:
        raise _Bad("version is not 0x0100")
    offset = struct.unpack_from(endian + "Q", data, 116)[0]
    bodies = _check_stream(data, 128, endian, inflated)
    if offset in (0, 0x2020202020202020):
        return
    if offset not in bodies:
        raise _Bad(f"the subsystem offset {offset} is not the start of an element")
    _check_subsystem(bodies[offset], endian, inflated)


def _check_stream(data, pos, endian, inflated):
    """Check the top-level elements from ``pos`` to the end of ``data``
    (bytes);
    {start: matrix body} of each."""
    bodies = {}
    while pos < len(data):
        if pos + 8 > len(data):
            raise _Bad(f"{len(data) - pos} stray bytes at byte {pos}")
        kind, size, start, stop = _tag(data, pos, endian)
        if start != pos + 8 or size == 0:
            raise _Bad(f"top-level element at byte {pos} has a small or empty tag")
        if kind == _MI_COMPRESSED:
            element = inflated.inflate(data[start:stop], endian)
            inner_kind, _, inner_start, inner_stop = _tag(element, 0, endian)
            if inner_kind != _MI_MATRIX or inner_start != 8 or inner_stop != len(element):
                raise _Bad(f"the compressed element at byte {pos} does not hold exactly one matrix")
            body = memoryview(element)[inner_start:inner_stop]
            next_pos = stop
        elif kind == _MI_MATRIX:
            if size % 8:
                raise _Bad(f"matrix at byte {pos} of {size} bytes, not a multiple of 8")
            body = memoryview(data)[start:stop]
            next_pos = stop
        else:
            raise _Bad(f"top-level element of type {kind} at byte {pos}; expected a matrix")
        _check_matrix(body, endian, 0, top=True)
        bodies[pos] = body
        pos = next_pos
    return bodies


def _check_subsystem(body, endian, inflated):
    """The subsystem: a uint8 matrix whose bytes are a MAT stream (a
    4-byte version and endian indicator, 4 bytes of padding, elements)."""
    flags, dims, _, pos = _matrix_head(body, endian)
    if flags & 0xFF != 9 or flags & _COMPLEX:
        raise _Bad("the subsystem is not a uint8 matrix")
    kind, size, start, stop = _tag(body, pos, endian)
    if kind != 2:
        raise _Bad("the subsystem's bytes are not stored as uint8")
    stream = bytes(body[start:stop])
    if len(stream) < 8 or stream[2:4] not in (b"IM", b"MI"):
        raise _Bad("the subsystem is not a MAT stream")
    inner = "<" if stream[2:4] == b"IM" else ">"
    if struct.unpack_from(inner + "H", stream, 0)[0] != 0x0100:
        raise _Bad("the subsystem's version is not 0x0100")
    if len(stream) == 8:
        raise _Bad("the subsystem is empty")
    _check_stream(stream, 8, inner, inflated)


def _matrix_head(body, endian):
    """(flags, dims or None, name, position after them) of a matrix body."""
    kind, size, start, _ = _tag(body, 0, endian)
    if kind != 6 or size != 8 or start != 8:
        raise _Bad("a matrix must start with its array flags")
    flags = struct.unpack_from(endian + "I", body, start)[0]
    pos = 16
    if flags & 0xFF == _MX_OPAQUE:
        return flags, None, None, pos
    kind, size, start, stop = _tag(body, pos, endian)
    if kind not in (5, 6) or size % 4 or not 8 <= size <= 4 * _MAX_DIMS:
        raise _Bad("a matrix needs its dimensions (2 to 32 int32)")
    dims = struct.unpack_from(endian + f"{size // 4}i", body, start)
    if min(dims) < 0:
        raise _Bad(f"negative dimensions {dims}")
    pos = _next(pos, start, size)
    name, pos = _string(body, pos, endian)
    return flags, dims, name, pos


def _string(body, pos, endian):
    """An int8 (or ASCII UTF-8) string element: (text, position after it)."""
    kind, size, start, stop = _tag(body, pos, endian)
    text = bytes(body[start:stop])
    if kind not in (1, 16) or (kind == 16 and max(text, default=0) > 127):
        raise _Bad(f"a name at byte {pos} is of type {kind}, not int8")
    return text, _next(pos, start, size)


def _int32(body, pos, endian):
    kind, size, start, _ = _tag(body, pos, endian)
    if kind not in (5, 6) or size != 4:
        raise _Bad("a field name length must be one int32")
    return struct.unpack_from(endian + "i", body, start)[0], _next(pos, start, size)


def _check_matrix(body, endian, depth, top=False):
    """Check a miMATRIX element's body as mat-io will read it: every
    element in its place, of a type it decodes, each declared count backed
    by bytes, consuming the body exactly."""
    if depth > _MAX_DEPTH:
        raise _Bad(f"matrices nested more than {_MAX_DEPTH} deep")
    if not body:
        if top:
            raise _Bad("an empty top-level matrix")
        return
    flags, dims, name, pos = _matrix_head(body, endian)
    mx = flags & 0xFF
    if mx == _MX_OPAQUE:
        for _ in range(3):  # name, type system, class name
            _, pos = _string(body, pos, endian)
        pos = _child(body, pos, endian, depth)
    else:
        count = 1
        for d in dims:
            count *= d
        if mx == _MX_OBJECT:
            _, pos = _string(body, pos, endian)
        if mx in _MX:
            if flags & _COMPLEX:
                raise _Bad(f"matrix {name!r} is complex")
            kind, size, start, stop = _tag(body, pos, endian)
            if kind not in _MI:
                raise _Bad(f"matrix {name!r} holds values of type {kind}")
            if size != count * np.dtype(_MI[kind]).itemsize:
                raise _Bad(f"matrix {name!r} of {dims} holds {size} bytes of type {kind}")
            pos = _next(pos, start, size)
        elif mx == _MX_CHAR:
            kind, size, start, stop = _tag(body, pos, endian)
            width = _CHAR_TYPES.get(kind)
            if width is None:
                raise _Bad(f"text {name!r} of type {kind}")
            if (size == 0 and count) or (width and size != count * width) or (not width and count > size):
                raise _Bad(f"text {name!r} of {dims} holds {size} bytes of type {kind}")
            pos = _next(pos, start, size)
        elif mx == _MX_CELL:
            if count > len(body) // 8:
                raise _Bad(f"cell {name!r} of {dims} cannot fit in {len(body)} bytes")
            for _ in range(count):
                pos = _child(body, pos, endian, depth)
        elif mx in (_MX_STRUCT, _MX_OBJECT):
            length, pos = _int32(body, pos, endian)
            kind, size, start, stop = _tag(body, pos, endian)
            if kind != 1 or not 0 < length <= 4096 or size % length:
                raise _Bad(f"struct {name!r}: field names of {size} bytes, {length} each")
            names = bytes(body[start:stop])
            fields = size // length
            if any(b"\x00" not in names[i:i + length] for i in range(0, size, length)):
                raise _Bad(f"struct {name!r}: a field name is not terminated")
            pos = _next(pos, start, size)
            if count > len(body) // 8 or (fields and count * fields > len(body) // 8):
                raise _Bad(f"struct {name!r} of {dims} with {fields} fields cannot fit in {len(body)} bytes")
            for _ in range(count * fields):
                pos = _child(body, pos, endian, depth)
        else:
            raise _Bad(f"matrix {name!r} of class {mx} (sparse, function handle or unknown)")
    if pos != len(body):
        raise _Bad(f"a matrix of {len(body)} bytes holds {pos} bytes of elements")


def _child(body, pos, endian, depth):
    """Check the miMATRIX element at ``pos`` of a cell, struct or opaque
    object; the position after it."""
    if pos + 8 > len(body):
        raise _Bad(f"truncated matrix tag at byte {pos}")
    kind, size = struct.unpack_from(endian + "II", body, pos)
    if kind != _MI_MATRIX:
        raise _Bad(f"element of type {kind} at byte {pos}; expected a matrix")
    if size > len(body) - pos - 8 or size % 8:
        raise _Bad(f"matrix at byte {pos} declares {size} bytes, {len(body) - pos - 8} follow")
    _check_matrix(body[pos + 8:pos + 8 + size], endian, depth + 1)
    return pos + 8 + size
