fn main() -> std::process::ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    batchwise::cli::main(batchwise::app::run_native)
}
