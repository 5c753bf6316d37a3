use clap::Parser;

fn main() {
    // `flux backup|restore|export|import …`: operator commands (`flux::tools`).
    if let Some(cmd) = std::env::args().nth(1) {
        if flux::tools::COMMANDS.contains(&cmd.as_str()) {
            std::process::exit(flux::tools::main(std::env::args_os()));
        }
    }
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
