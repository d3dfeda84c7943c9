//! Puts libtorch's directory (the active Python's torch, via LIBTORCH_USE_PYTORCH=1) on the
//! extension's rpath, so it loads without LD_LIBRARY_PATH. torch-sys reports the directory as
//! `DEP_TCH_LIBTORCH_LIB` because it declares `links = "tch"`.

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
