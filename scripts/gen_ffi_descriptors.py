#!/usr/bin/env python3
"""Collect the FFI protocol's FileDescriptorProtos from the pinned PyPI `livekit` wheel.

The wheel's `livekit/rtc/_proto/*_pb2.py` modules embed the serialized descriptors that
`liblivekit_ffi.so` in the same wheel was built from. build.rs feeds the resulting
FileDescriptorSet to prost-build, so Rust types always match the loaded library.

Usage: gen_ffi_descriptors.py OUT.fds   (run with the project's venv, where livekit==PIN is installed)
"""
import importlib
import pkgutil
import sys

from google.protobuf import descriptor_pb2

import livekit.rtc
import livekit.rtc._proto as proto_pkg


def main() -> None:
    out = sys.argv[1]
    modules = [m.name for m in pkgutil.iter_modules(proto_pkg.__path__) if m.name.endswith("_pb2")]
    files = {}
    for name in sorted(modules):
        mod = importlib.import_module(f"livekit.rtc._proto.{name}")
        files[mod.DESCRIPTOR.name] = mod.DESCRIPTOR

    # Dependencies first: prost-build resolves imports in order.
    ordered, seen = [], set()

    def visit(fd):
        if fd.name in seen:
            return
        seen.add(fd.name)
        for dep in fd.dependencies:
            visit(dep)
        ordered.append(fd)

    for name in sorted(files):
        visit(files[name])

    fds = descriptor_pb2.FileDescriptorSet()
    for fd in ordered:
        proto = descriptor_pb2.FileDescriptorProto()
        fd.CopyToProto(proto)
        fds.file.append(proto)
    with open(out, "wb") as f:
        f.write(fds.SerializeToString())
    print(f"{out}: {len(fds.file)} files from livekit {livekit.rtc.__version__}")


if __name__ == "__main__":
    main()
