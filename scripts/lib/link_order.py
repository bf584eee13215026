"""Writes the link order of the `edge` binary (scripts/link-order.sh), in two passes.

    python3 scripts/lib/link_order.py profile INSTRUMENTED_EDGE PROFRAW...
    python3 scripts/lib/link_order.py finish EDGE RAN_FILE
    python3 scripts/lib/link_order.py check EDGE ORDER_FILE

`profile` reads the raw LLVM profiles an instrumented node wrote and prints the functions
that ran. The binary is built with `-C profile-generate -C llvm-args=-pgo-function-entry-
coverage`: each function has one byte, cleared when it first runs. A profile (raw format
version 10, LLVM 19 and later) holds, per function, the MD5 of its name and where its byte
is; the names section maps the hashes back. Names are printed in the order the instrumented
binary lays the functions out, which keeps each crate's code together.

`finish` reads a normal build and prints the final order: the functions `profile` listed, as
that build names them (a function called across codegen units carries a `.llvm.NUMBER`
suffix that differs between the two builds: one placed name in eight, more once the code
has changed since the profile), then the functions they call directly that are not placed
yet and not cold (`.text.unlikely`): the standard library (precompiled, so not
instrumented), C and assembly code, and generic instances the optimizer made differently
from the instrumented build.

`check` says how many of the order file's names a build has: after a change to the code a
node runs, fewer (the names not found are left where they were), and it is time to rerun
scripts/link-order.sh.
"""

import hashlib
import re
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
    """Every function symbol of `exe` as (address, size, name), in address order."""
    out = subprocess.run(["nm", "-n", "-S", "--defined-only", exe], capture_output=True,
                         text=True, check=True)
    symbols = []
    for line in out.stdout.splitlines():
        fields = line.split()
        if len(fields) == 4 and fields[2] in "tTwW":
            symbols.append((int(fields[0], 16), int(fields[1], 16), fields[3]))
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


def section_ranges(exe):
    out = subprocess.run(["readelf", "-SW", exe], capture_output=True, text=True, check=True)
    ranges = {}
    for line in out.stdout.splitlines():
        fields = line.replace("[ ", "[").split()
        if len(fields) > 5 and fields[0].startswith("[") and fields[0][1:-1].isdigit():
            start, size = int(fields[3], 16), int(fields[5], 16)
            ranges[fields[1]] = range(start, start + size)
    return ranges


def profile(exe, profiles):
    ran = set()
    for path in profiles:
        ran.update(functions_that_ran(path))
    ran.discard(None)
    # Functions inlined everywhere have no symbol.
    placed = set()
    for _address, _size, name in function_symbols(exe):
        if name in ran and name not in placed:
            placed.add(name)
            print(name)
    print(f"link_order: {len(ran)} functions ran, {len(placed)} have a symbol", file=sys.stderr)


def listed_names(path):
    """The function names a list file holds, one per line, `#` lines being comments."""
    return [line.strip() for line in open(path) if line.strip() and not line.startswith("#")]


LLVM_SUFFIX = re.compile(r"\.llvm\.\d+$")


def stem(name):
    """`name` without the `.llvm.NUMBER` suffix rustc gives a function called across codegen
    units: the number changes with the crate's code and differs between the instrumented and
    the normal build, the rest of the name does not."""
    return LLVM_SUFFIX.sub("", name)


def resolve(symbols, ran):
    """The functions in `ran` (names from the profile) under their names in the normal build:
    the same name, else every symbol with the same name up to its `.llvm.NUMBER` suffix."""
    exact = {name for _address, _size, name in symbols}
    by_stem = {}
    for _address, _size, name in symbols:
        by_stem.setdefault(stem(name), []).append(name)
    resolved, seen, renamed = [], set(), 0
    for name in ran:
        if name in exact:
            found = [name]
        else:
            found = by_stem.get(stem(name), [])
            renamed += bool(found)
        for symbol in found:
            if symbol not in seen:
                seen.add(symbol)
                resolved.append(symbol)
    print(f"link_order: {len(resolved)} functions placed, {renamed} of them found under another "
          f"suffix", file=sys.stderr)
    return resolved


def direct_callees(exe, functions, extent):
    """Addresses that `functions` (names) call or jump to, from a disassembly of `exe`."""
    wanted = {extent[name][0] for name in functions}
    header = re.compile(r"^([0-9a-f]+) <.*>:$")
    branch = re.compile(r"\s(?:call|jmp)\s+([0-9a-f]+) <")
    targets, inside = set(), False
    listing = subprocess.Popen(["objdump", "-d", "--no-show-raw-insn", "-j", ".text", exe],
                               stdout=subprocess.PIPE, text=True)
    for line in listing.stdout:
        if line.endswith(">:\n"):
            match = header.match(line)
            inside = bool(match) and int(match.group(1), 16) in wanted
        elif inside:
            match = branch.search(line)
            if match:
                targets.add(int(match.group(1), 16))
    if listing.wait() != 0:
        sys.exit(f"link_order: objdump failed on {exe}")
    return targets


def finish(exe, ran_file):
    """Prints the final order: the profile's functions as the normal build names them, then the
    functions they call directly that are not placed yet and not cold."""
    symbols = function_symbols(exe)
    ordered = resolve(symbols, listed_names(ran_file))
    extent = {name: (address, size) for address, size, name in symbols}
    by_address = {}
    for address, _size, name in symbols:
        by_address.setdefault(address, []).append(name)
    cold = section_ranges(exe).get(".text.unlikely", range(0))
    placed = set(ordered)
    own = {extent[name][0] for name in ordered}
    for name in ordered:
        print(name)
    added = 0
    for target in sorted(direct_callees(exe, ordered, extent)):
        if target in own or target in cold:
            continue
        for name in by_address.get(target, []):
            if name not in placed:
                placed.add(name)
                added += 1
                print(name)
    print(f"link_order: {added} functions called from the placed ones", file=sys.stderr)


def check(exe, order_file):
    """Prints how many of the functions `order_file` lists `exe` has."""
    names = {name for _address, _size, name in function_symbols(exe)}
    listed = listed_names(order_file)
    found = sum(name in names for name in listed)
    print(f"link order: {found} of the {len(listed)} functions {order_file} lists are in {exe} "
          f"({100 * found / max(len(listed), 1):.0f} %)")


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "profile":
        profile(sys.argv[2], sys.argv[3:])
    elif len(sys.argv) == 4 and sys.argv[1] == "finish":
        finish(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 4 and sys.argv[1] == "check":
        check(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
