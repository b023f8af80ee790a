//! Gives the shared library the soname `libringfort.so.0`, the name `ffi/install.sh`
//! installs it under, so programs linked with `-lringfort` find it at run time.

fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libringfort.so.0");
}
