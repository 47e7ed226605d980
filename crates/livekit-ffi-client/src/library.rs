//! Loads `liblivekit_ffi.so` (LiveKit's Rust SDK with libwebrtc, as shipped in the PyPI
//! `livekit` wheel) and exposes its four C entry points.

use std::ffi::{CString, c_char};
use std::path::{Path, PathBuf};

use thiserror::Error;

/// The wheel version the committed descriptor set was generated from.
pub const PINNED_WHEEL: &str = "livekit==1.2.1";
/// The library's file name.
pub const LIBRARY_FILE: &str = "liblivekit_ffi.so";

pub type EventCallback = extern "C" fn(*const u8, usize);

type InitializeFn = unsafe extern "C" fn(EventCallback, bool, *const c_char, *const c_char);
type RequestFn = unsafe extern "C" fn(*const u8, usize, *mut *const u8, *mut usize) -> u64;
type DropHandleFn = unsafe extern "C" fn(u64) -> bool;
type DisposeFn = unsafe extern "C" fn();

#[derive(Debug, Error)]
pub enum LibraryError {
    #[error(
        "LiveKit FFI library not found at {0} (install it with `scripts/setup.sh`, or set LIVEKIT_LIB_PATH)"
    )]
    NotFound(PathBuf),
    #[error("cannot load LiveKit FFI library {path}: {source}")]
    Load {
        path: PathBuf,
        source: libloading::Error,
    },
}

pub struct FfiLibrary {
    _lib: libloading::Library,
    initialize: InitializeFn,
    request: RequestFn,
    drop_handle: DropHandleFn,
    dispose: DisposeFn,
    pub path: PathBuf,
}

impl FfiLibrary {
    pub fn load(path: &Path) -> Result<Self, LibraryError> {
        if !path.is_file() {
            return Err(LibraryError::NotFound(path.to_path_buf()));
        }
        let load_err = |source| LibraryError::Load {
            path: path.to_path_buf(),
            source,
        };
        // SAFETY: the library is LiveKit's FFI build; its symbols have the C signatures above
        // (see livekit_ffi.h in the wheel and the Python SDK's ctypes declarations).
        unsafe {
            let lib = libloading::Library::new(path).map_err(load_err)?;
            let initialize = *lib
                .get::<InitializeFn>(b"livekit_ffi_initialize\0")
                .map_err(load_err)?;
            let request = *lib
                .get::<RequestFn>(b"livekit_ffi_request\0")
                .map_err(load_err)?;
            let drop_handle = *lib
                .get::<DropHandleFn>(b"livekit_ffi_drop_handle\0")
                .map_err(load_err)?;
            let dispose = *lib
                .get::<DisposeFn>(b"livekit_ffi_dispose\0")
                .map_err(load_err)?;
            Ok(Self {
                _lib: lib,
                initialize,
                request,
                drop_handle,
                dispose,
                path: path.to_path_buf(),
            })
        }
    }

    pub fn initialize(&self, callback: EventCallback, capture_logs: bool) {
        let sdk = CString::new("rust").expect("static string");
        let version = CString::new(env!("CARGO_PKG_VERSION")).expect("static string");
        // SAFETY: the strings outlive the call; the library copies them.
        unsafe { (self.initialize)(callback, capture_logs, sdk.as_ptr(), version.as_ptr()) }
    }

    /// Sends a serialized `FfiRequest`; returns the serialized `FfiResponse` (copied) and
    /// releases the response buffer's handle.
    pub fn request(&self, request: &[u8]) -> Vec<u8> {
        let mut ptr: *const u8 = std::ptr::null();
        let mut len: usize = 0;
        // SAFETY: request is a valid slice; ptr/len are written by the library and stay
        // valid until the returned handle is dropped, which happens after the copy.
        unsafe {
            let handle = (self.request)(request.as_ptr(), request.len(), &mut ptr, &mut len);
            let response = if ptr.is_null() {
                Vec::new()
            } else {
                std::slice::from_raw_parts(ptr, len).to_vec()
            };
            (self.drop_handle)(handle);
            response
        }
    }

    /// Closes every room the library holds and releases its handles; blocks until done.
    pub fn dispose(&self) {
        // SAFETY: takes no arguments; the library tolerates being disposed with rooms open.
        unsafe { (self.dispose)() }
    }

    pub fn drop_handle(&self, handle: u64) -> bool {
        // SAFETY: dropping an unknown handle is reported by the return value, not UB.
        unsafe { (self.drop_handle)(handle) }
    }
}
