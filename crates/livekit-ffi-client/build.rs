//! Generates Rust types for the LiveKit FFI protocol from the committed descriptor set.
//! The set is produced by scripts/gen_ffi_descriptors.py from the same wheel whose
//! liblivekit_ffi.so is loaded at run time, so field numbers always match the library.

use std::path::PathBuf;

fn main() {
    // Read at run time, not baked in with env!: a build script compiled for a clone at another
    // path is reused from a shared target directory and must not look there.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let fds_path = PathBuf::from(manifest_dir).join("../../proto/livekit-ffi.fds");
    println!("cargo:rerun-if-changed={}", fds_path.display());
    let bytes = std::fs::read(&fds_path)
        .expect("proto/livekit-ffi.fds is missing: run scripts/gen_ffi_descriptors.py");
    let fds = <prost_types::FileDescriptorSet as prost::Message>::decode(bytes.as_slice())
        .expect("proto/livekit-ffi.fds is not a FileDescriptorSet");
    prost_build::Config::new()
        .compile_fds(fds)
        .expect("generating FFI protocol types");
}
