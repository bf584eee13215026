"""Splits the node's CPU samples (`perf script` output on stdin) into the stages of a request.

Each sample's whole stack is matched against STAGES, first match wins, so a malloc inside
instantiation counts as instantiation. Release builds keep no frame pointers, so many stacks
stop at their leaf: those are matched by the leaf frame alone (LEAF_STAGES), and allocator and
copy leaves whose caller is unknown get a row of their own. Prints each stage's share of the
samples and, given the node's CPU microseconds per request (argv[1]), its microseconds per
request.
"""

import re
import sys

# (stage, pattern over the sample's frames), most specific first.
STAGES = [
    ("teardown: store drop, instance slot reset",
     r"drop_in_place<wasmtime::runtime::store|StoreOpaque as core::ops::drop|deallocate|"
     r"reset_with_pagemap|decommit|clear_and_remain_ready"),
    ("instantiation (pre-instantiated component)", r"instantiate_async|Instantiator"),
    ("guest: its calls into the host (wasi:http, io, cli)",
     r"wasm\[.*(wasmtime_wasi|HostFunc|host::)"),
    ("guest: its own code", r"wasm\[|\.cwasm"),
    ("store and WASI/HTTP context creation",
     r"new_store|WasiCtxBuilder|new_incoming_request|new_response_outparam"),
    ("metering (CPU clock, counters)", r"posix_cpu_clock|task_sched_runtime|usage::"),
    ("kernel: socket send/receive (incl. waking the client)",
     r"tcp_sendmsg|tcp_recvmsg|sys_writev|sys_recvfrom|sys_read|sys_write|sock_"),
    ("event loop (epoll)", r"epoll"),
    ("HTTP/1 parse and serialize (hyper)", r"hyper::"),
    ("routing, body and concurrency limits, metrics", r"edge_host::"),
    ("task scheduling and wake-ups (tokio, futex)", r"tokio::runtime|futex|schedule"),
]


# Leaf frames of stacks no stage matched.
LEAF_STAGES = [
    ("teardown: store drop, instance slot reset", r"pagemap_scan|deallocate|decommit|reset_"),
    ("instantiation (pre-instantiated component)",
     r"func_loc|ModuleRegistry|lookup_vmdef|Instance::new|allocat|index_allocator|"
     r"component::instance|OwnedImports|push_export|Instantiator"),
    ("guest: its calls into the host (wasi:http, io, cli)",
     r"HostFn|load_params|store_results|resource_table|concurrent::|wasmtime_wasi|typed::"),
    ("task scheduling and wake-ups (tokio, futex)", r"tokio::|futex|schedule|switch"),
    ("malloc, free and copies (caller unknown)", r"malloc|free|memmove|memcpy|memset|unlink_chunk"),
    ("kernel: system call entry and exit", r"syscall|irqentry|SYSCALL"),
]


def main() -> None:
    us_per_request = float(sys.argv[1])
    compiled = [(name, re.compile(pattern)) for name, pattern in STAGES]
    leaf_compiled = [(name, re.compile(pattern)) for name, pattern in LEAF_STAGES]
    counts = {name: 0 for name, _ in STAGES + LEAF_STAGES}
    other = 0
    total = 0
    frames: list[str] = []

    def finish() -> None:
        nonlocal other, total
        if not frames:
            return
        total += 1
        stack = "\n".join(frames)
        for name, pattern in compiled:
            if pattern.search(stack):
                counts[name] += 1
                break
        else:
            for name, pattern in leaf_compiled:
                if pattern.search(frames[0]):
                    counts[name] += 1
                    break
            else:
                other += 1
        frames.clear()

    for line in sys.stdin:
        if not line.strip():
            finish()
        elif line.startswith((" ", "\t")):
            frames.append(line.strip())
    finish()
    if total == 0:
        sys.exit("cpu-budget: no samples")
    rows = list(counts.items()) + [("other", other)]
    print(f"{'stage':58} {'share':>7} {'µs/request':>11}")
    for name, count in rows:
        share = count / total
        print(f"{name:58} {share:7.1%} {share * us_per_request:11.1f}")
    print(f"{'total (' + str(total) + ' samples)':58} {1:7.1%} {us_per_request:11.1f}")


if __name__ == "__main__":
    main()
