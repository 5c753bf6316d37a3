//! `flux-loadtest`: the load tester for Flux (see the workspace README).
fn main() {
    eprintln!("flux-loadtest: not built yet");
    std::process::exit(2);
}
