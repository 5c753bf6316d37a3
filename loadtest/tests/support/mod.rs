//! What the black-box tests of this package share.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The real server binary (see the module doc): found or built once.
pub fn server_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("FLUX_BIN") {
            return PathBuf::from(p);
        }
        // TOOL is `<target>/<profile>/flux-loadtest`; the server's binary of the
        // same build sits beside it.
        let beside = Path::new(env!("CARGO_BIN_EXE_flux-loadtest")).with_file_name("flux");
        if beside.is_file() {
            return beside;
        }
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let target = workspace.join("target/loadtest-server");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        eprintln!("building the flux server into {}", target.display());
        let status = Command::new(cargo)
            .current_dir(&workspace)
            .args(["build", "-p", "flux", "--bin", "flux", "--target-dir"])
            .arg(&target)
            .status()
            .expect("cannot run cargo to build the flux server");
        assert!(status.success(), "cargo build -p flux failed: {status}");
        target.join("debug/flux")
    })
}
