use clap::Parser;

fn main() {
    let cfg = flux::config::Config::parse();
    if let Err(msg) = cfg.validate() {
        eprintln!("flux: {msg}");
        std::process::exit(2);
    }
    if let Err(e) = flux::server::run(cfg) {
        eprintln!("flux: {e}");
        std::process::exit(1);
    }
}
