//! Embeds the web console's player, hls.js from npm (pinned in console/package-lock.json and
//! installed by scripts/console_setup.sh), into the binary. Without it the build still
//! succeeds: the console then says that its player assets are not installed.

use std::path::Path;

fn main() {
    let src = Path::new("console/node_modules/hls.js/dist/hls.min.js");
    println!("cargo:rerun-if-changed=console/package-lock.json");
    println!("cargo:rerun-if-changed=console/node_modules/hls.js/dist/hls.min.js");
    println!("cargo:rerun-if-changed=build.rs");
    let out = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("hls.min.js");
    let bytes = match std::fs::read(src) {
        Ok(bytes) => bytes,
        Err(_) => {
            println!(
                "cargo:warning=the web console's player (hls.js) is not installed: run scripts/console_setup.sh; the console will say so"
            );
            Vec::new()
        }
    };
    // Only rewritten when it changed, so the crate is not rebuilt for nothing.
    if std::fs::read(&out).ok().as_deref() != Some(&bytes[..]) {
        std::fs::write(&out, &bytes).expect("write OUT_DIR/hls.min.js");
    }
}
