use clap::Parser;
use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("ctl") {
        std::process::exit(warren::ctl::main(&args[2..]));
    }
    if let Err(err) = warren::config::load_config_file(&args) {
        eprintln!("warren: {err}");
        std::process::exit(2);
    }
    let config = warren::config::Config::parse();
    if let Err(err) = warren::log::init(config.log_format) {
        eprintln!("warren: {err}");
        std::process::exit(2);
    }
    if let Err(err) = warren::server::run(config) {
        eprintln!("warren: {err}");
        std::process::exit(1);
    }
}
