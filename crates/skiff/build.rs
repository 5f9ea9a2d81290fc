//! Release builds on Linux link the skiff binary with `hot-text.ld`: the
//! functions a proxied request runs, laid out together ahead of the rest of
//! the code (see bench/gateway/hot_text.py, which writes it). Debug builds,
//! which the tests use, are linked as they are. `SKIFF_HOT_TEXT=0` turns it
//! off, to measure what it is worth. Release builds on Linux also keep their
//! relocations, for BOLT (bench/gateway/bolt.sh).

use std::env;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=hot-text.ld");
    println!("cargo:rerun-if-env-changed=SKIFF_HOT_TEXT");
    let linux = env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    let release = env::var("PROFILE").is_ok_and(|p| p == "release");
    let wanted = env::var("SKIFF_HOT_TEXT").map_or(true, |v| v != "0");
    if linux && release {
        // Keep the link's relocations in the binary: BOLT needs them to lay
        // its code out again (bench/gateway/bolt.sh). They are not loaded at
        // run time; on disk they double the binary's size.
        println!("cargo:rustc-link-arg-bin=skiff=-Wl,--emit-relocs");
    }
    if linux && release && wanted {
        let dir = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
        let script = Path::new(&dir).join("hot-text.ld");
        let script = script.display().to_string();
        if script.contains(',') {
            // -Wl splits its argument at commas.
            println!("cargo:warning=not using {script}: its path has a comma");
            return;
        }
        // A script with INSERT adds to the linker's default layout rather
        // than replacing it (GNU ld and lld alike).
        println!("cargo:rustc-link-arg-bin=skiff=-Wl,-T,{script}");
    }
}
