use clap::Parser;
use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() {
    let config = warren::config::Config::parse();
    if let Err(err) = warren::shard::run(config) {
        eprintln!("warren: {err}");
        std::process::exit(1);
    }
}
