"""Reads the raw LLVM profiles an instrumented `edge` wrote and prints the link order file.

    python3 scripts/lib/link_order.py INSTRUMENTED_EDGE PROFRAW... > host/link-order.txt

The binary is built with `-C profile-generate -C llvm-args=-pgo-function-entry-coverage`
(scripts/link-order.sh): each function has one byte, cleared when the function first runs.
A profile (raw format version 10, LLVM 19 and later) holds, per function, its address in the
running process and where its byte is. The running address minus the load address (the
names section's address in the process, from the header, minus its address in the file)
gives the function's symbol in the instrumented binary; `nm` names it. Symbols are printed in
the order the instrumented binary lays them out, which keeps each crate's code together.
"""

import hashlib
import struct
import subprocess
import sys
import zlib

HEADER = struct.Struct("<16Q")
# NameRef, FuncHash, CounterPtr (relative to the record), BitmapPtr, FunctionPointer, Values,
# NumCounters; then NumValueSites[3] and NumBitmapBytes, padded to 64 bytes.
RECORD = struct.Struct("<QQqqQQI")
RECORD_SIZE = 64
BYTE_COVERAGE = 1 << 60


def function_symbols(exe):
    out = subprocess.run(["nm", "--defined-only", exe], capture_output=True, text=True, check=True)
    symbols = {}
    for line in out.stdout.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[1] in "tTwW":
            symbols.setdefault(int(fields[0], 16), []).append(fields[2])
    return symbols


def uleb128(data, offset):
    value = shift = 0
    while True:
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, offset


def profile_names(data):
    """Maps each name's reference (the low 64 bits of its MD5) to the symbol it names.

    The names section is a run of chunks, each its length, its compressed length (0: stored
    as is) and names joined by 0x01. A local function's name is `FILE;SYMBOL`."""
    names = {}
    offset, end = 0, len(data)
    while offset < end:
        length, offset = uleb128(data, offset)
        compressed, offset = uleb128(data, offset)
        if compressed:
            chunk = zlib.decompress(data[offset:offset + compressed])
            offset += compressed
        else:
            chunk = data[offset:offset + length]
            offset += length
        for name in chunk.split(b"\x01"):
            if name:
                reference = int.from_bytes(hashlib.md5(name).digest()[:8], "little")
                names[reference] = name.rsplit(b";", 1)[-1].decode()
        if offset < end and data[offset] == 0:
            break  # padding
    return names


def functions_that_ran(profile):
    """Yields the symbol of every function whose entry byte was cleared."""
    data = open(profile, "rb").read()
    (_magic, version, binary_ids, records, pad_before, counter_count, pad_after, bitmap,
     pad_bitmap, names_size, counters_delta, *_rest) = HEADER.unpack_from(data, 0)
    if version & 0xFFFFFFFF != 10 or not version & BYTE_COVERAGE:
        sys.exit(f"{profile}: not a version 10 function-entry-coverage profile ({version:#x})")
    counters_delta -= (counters_delta >> 63) << 64  # signed
    first_record = HEADER.size + binary_ids
    counters = first_record + records * RECORD_SIZE + pad_before
    names_start = counters + counter_count + pad_after + bitmap + pad_bitmap
    names = profile_names(data[names_start:names_start + names_size])
    for i in range(records):
        fields = RECORD.unpack_from(data, first_record + i * RECORD_SIZE)
        name_ref, counter_ptr, counters_here = fields[0], fields[2], fields[6]
        first = counters + i * RECORD_SIZE + counter_ptr - counters_delta
        if any(data[first + k] == 0 for k in range(counters_here)):
            yield names.get(name_ref)


def main():
    exe, profiles = sys.argv[1], sys.argv[2:]
    ran = set()
    for profile in profiles:
        ran.update(functions_that_ran(profile))
    unnamed = ran.discard(None)
    # Printed in the instrumented binary's layout; functions inlined everywhere have no symbol.
    placed = set()
    for address, names in sorted(function_symbols(exe).items()):
        for name in names:
            if name in ran and name not in placed:
                placed.add(name)
                print(name)
    print(f"link_order: {len(ran)} functions ran, {len(placed)} have a symbol", file=sys.stderr)


if __name__ == "__main__":
    main()
