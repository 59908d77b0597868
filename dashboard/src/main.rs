use std::process::ExitCode;

use shopstream_common::{cli, logging};
use shopstream_dashboard::{Cli, run};

fn main() -> ExitCode {
    let cli: Cli = cli::parse_or_exit();
    logging::init(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{}", shopstream_common::error::chain(&e));
            ExitCode::FAILURE
        }
    }
}
