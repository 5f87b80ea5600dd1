use clap::Parser;

fn main() {
    let cli = parallax::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            std::process::exit(parallax::exit_code::SETUP_FAILED);
        }
    };
    let code = runtime.block_on(parallax::cli::execute(cli));
    // Leftover keep-alive connections must not delay the exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    std::process::exit(code);
}
