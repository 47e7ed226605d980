//! Uploaded and fetched background images: decoded within the size and aspect limits or
//! refused, and fitted to any frame size without a larger intermediate.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meeting_agent::video::background::{MAX_ASPECT, MAX_KEPT_SIDE, decode, fit};

fuzz_target!(|data: &[u8]| {
    if let Ok(image) = decode(data) {
        let (w, h) = image.dimensions();
        assert!(w.max(h) <= MAX_KEPT_SIDE);
        assert!(w.max(h) <= w.min(h) * MAX_ASPECT + 1);
        let side = |b: u8| 2 * (1 + b as u32 % 64);
        let (fw, fh) = (side(data[0]), side(data[data.len() - 1]));
        let frame = fit(&image, fw, fh);
        assert_eq!((frame.width, frame.height), (fw, fh));
    }
});
